package apidoc

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestRoutesMatch(t *testing.T) {
	table := []Route{{Method: "GET", Path: "/a", Summary: "a"}, {Method: "POST", Path: "/b/:id", Summary: "b"}}
	for _, c := range []struct {
		name   string
		served []Served
		want   []string
	}{
		{"same", []Served{{"GET", "/a"}, {"HEAD", "/a"}, {"POST", "/b/:id"}}, nil},
		{"served without description", []Served{{"GET", "/a"}, {"POST", "/b/:id"}, {"DELETE", "/b/:id"}},
			[]string{"DELETE /b/:id is served but has no description"}},
		{"described but not served", []Served{{"GET", "/a"}},
			[]string{"POST /b/:id is described but not served"}},
		{"another method", []Served{{"GET", "/a"}, {"PUT", "/b/:id"}},
			[]string{"POST /b/:id is described but not served", "PUT /b/:id is served but has no description"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := RoutesMatch(table, c.served); !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestDocumentRefusesBadTables(t *testing.T) {
	for _, c := range []struct {
		name   string
		routes []Route
		want   string
	}{
		{"no summary", []Route{{Method: "GET", Path: "/a"}}, "has no summary"},
		{"twice", []Route{{Method: "GET", Path: "/a", Summary: "x"}, {Method: "GET", Path: "/a", Summary: "y"}}, "described twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Document(Info{Failure: struct{}{}}, c.routes); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

type inner struct {
	Status string `json:"status"`
}

type reply struct {
	inner
	Count *int              `json:"count,omitempty"`
	Names []string          `json:"names"`
	Raw   []byte            `json:"raw"`
	Sizes map[string]uint64 `json:"sizes,omitempty"`
	Self  []reply           `json:"self,omitempty"`
	skip  int
}

// TestSchemasFollowGoTypes: embedded structs inline, pointers and omitempty optional,
// named types under components once (recursive ones too), path parameters from the path.
func TestSchemasFollowGoTypes(t *testing.T) {
	b, err := Document(Info{Failure: inner{}}, []Route{{Method: "GET", Path: "/r/:id", Summary: "r", Reply: reply{}}})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
				Required   []string                  `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	r := doc.Components.Schemas["reply"]
	if !slices.Equal(r.Required, []string{"status", "names", "raw"}) {
		t.Errorf("required %q", r.Required)
	}
	if len(r.Properties) != 6 || r.Properties["raw"]["format"] != "byte" || r.Properties["count"]["type"] != "integer" ||
		r.Properties["self"]["items"].(map[string]any)["$ref"] != "#/components/schemas/reply" {
		t.Errorf("properties %v", r.Properties)
	}
	if doc.Paths["/r/{id}"]["get"] == nil {
		t.Errorf("paths %v", doc.Paths)
	}
}
