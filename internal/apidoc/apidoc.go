// Package apidoc builds the OpenAPI 3 document a service serves at GET /openapi.json
// from its route table: the table names each route's Go request and reply types, and
// their JSON schemas come from those types, so the document cannot drift from the
// contract packages (managerapi, atmapi). Each service's test holds the table and the
// routes it serves together (RoutesMatch).
package apidoc

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Route is one endpoint of a service.
type Route struct {
	Method string // GET, POST, PUT, DELETE
	Path   string // as the server mounts it: /topics/:name
	// Summary says what the route does, for people (required: a route without one is
	// refused by RoutesMatch).
	Summary string
	Params  []Param // query and header parameters; path parameters come from Path
	Body    any     // a value of the JSON request body's type; nil when there is none
	Reply   any     // a value of the JSON success reply's type; nil for Text routes
	Status  int     // the success status; 0 means 200
	// Text is the content type of a reply that is not JSON (the Prometheus metrics).
	Text string
}

// Param is a query, header or path parameter.
type Param struct {
	In          string // query, header or path
	Name        string
	Description string
	Required    bool
	Type        string // string (default), integer or boolean
}

// Info names the service the document describes.
type Info struct {
	Title, Version, Description string
	Failure                     any // the failure body's type, the reply of every error
}

var pathParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// OpenAPIPath turns a Fiber path (/topics/:name) into an OpenAPI one (/topics/{name}).
func OpenAPIPath(p string) string { return pathParam.ReplaceAllString(p, "{$1}") }

// Document returns the OpenAPI 3 document of routes, as JSON.
func Document(info Info, routes []Route) ([]byte, error) {
	s := schemas{defs: map[string]any{}}
	failure := s.of(reflect.TypeOf(info.Failure))
	paths := map[string]map[string]any{}
	for _, r := range routes {
		if r.Summary == "" {
			return nil, fmt.Errorf("apidoc: %s %s has no summary", r.Method, r.Path)
		}
		op := map[string]any{"summary": r.Summary}
		var params []any
		for _, name := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			p := Param{In: "path", Name: name[1], Required: true}
			if i := slices.IndexFunc(r.Params, func(q Param) bool { return q.In == "path" && q.Name == name[1] }); i >= 0 {
				p = r.Params[i]
			}
			params = append(params, param(p))
		}
		for _, p := range r.Params {
			if p.In != "path" {
				params = append(params, param(p))
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		if r.Body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": s.of(reflect.TypeOf(r.Body))}}}
		}
		ok := map[string]any{"description": "success"}
		switch {
		case r.Text != "":
			ok["content"] = map[string]any{r.Text: map[string]any{"schema": map[string]any{"type": "string"}}}
		case r.Reply != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": s.of(reflect.TypeOf(r.Reply))}}
		}
		status := r.Status
		if status == 0 {
			status = 200
		}
		op["responses"] = map[string]any{
			fmt.Sprint(status): ok,
			"default": map[string]any{"description": "failure", "content": map[string]any{
				"application/json": map[string]any{"schema": failure}}},
		}
		path := OpenAPIPath(r.Path)
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		method := strings.ToLower(r.Method)
		if _, dup := paths[path][method]; dup {
			return nil, fmt.Errorf("apidoc: %s %s is described twice", r.Method, r.Path)
		}
		paths[path][method] = op
	}
	return json.MarshalIndent(map[string]any{
		"openapi":    "3.0.3",
		"info":       map[string]any{"title": info.Title, "version": info.Version, "description": info.Description},
		"paths":      paths,
		"components": map[string]any{"schemas": s.defs, "securitySchemes": map[string]any{"token": map[string]any{"type": "http", "scheme": "bearer"}}},
		// Tokens are needed only on a secured cluster; an open one takes none.
		"security": []any{map[string]any{"token": []string{}}, map[string]any{}},
	}, "", "  ")
}

// Lazy returns the document of routes, built on the first call. It panics on a
// malformed table: a service's route table is fixed at build time, and its tests
// build the document.
func Lazy(info Info, routes []Route) func() []byte {
	return sync.OnceValue(func() []byte {
		doc, err := Document(info, routes)
		if err != nil {
			panic(err)
		}
		return doc
	})
}

func param(p Param) map[string]any {
	typ := p.Type
	if typ == "" {
		typ = "string"
	}
	out := map[string]any{"name": p.Name, "in": p.In, "required": p.Required, "schema": map[string]any{"type": typ}}
	if p.Description != "" {
		out["description"] = p.Description
	}
	return out
}

// schemas turns Go types into JSON schemas, named struct types once under
// components/schemas.
type schemas struct{ defs map[string]any }

var rawJSON = reflect.TypeOf(json.RawMessage(nil))

func (s schemas) of(t reflect.Type) map[string]any {
	if t == rawJSON {
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.of(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": s.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.of(t.Elem())}
	case reflect.Struct:
		if t.Name() == "" {
			return s.object(t)
		}
		if _, done := s.defs[t.Name()]; !done {
			s.defs[t.Name()] = nil // a type that refers to itself stops here
			s.defs[t.Name()] = s.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + t.Name()}
	}
	return map[string]any{}
}

// object is a struct's schema: its JSON fields, embedded structs' fields inline, and
// every field without omitempty required.
func (s schemas) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if f.Anonymous && tag == "" {
				add(f.Type)
				continue
			}
			if !f.IsExported() || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" {
				name = f.Name
			}
			props[name] = s.of(f.Type)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
	}
	add(t)
	out := map[string]any{"type": "object", "properties": props}
	if required != nil {
		out["required"] = required
	}
	return out
}

// Served is one route a server has mounted (fiber.Route's method and path).
type Served struct{ Method, Path string }

// RoutesMatch reports every served route the table does not describe and every
// described route that is not served. HEAD routes are skipped (Fiber adds one to every
// GET).
func RoutesMatch(routes []Route, served []Served) []string {
	described := map[Served]bool{}
	for _, r := range routes {
		described[Served{r.Method, r.Path}] = true
	}
	var problems []string
	seen := map[Served]bool{}
	for _, r := range served {
		if r.Method == "HEAD" || seen[r] {
			continue
		}
		seen[r] = true
		if !described[r] {
			problems = append(problems, fmt.Sprintf("%s %s is served but has no description", r.Method, r.Path))
		}
	}
	for r := range described {
		if !seen[r] {
			problems = append(problems, fmt.Sprintf("%s %s is described but not served", r.Method, r.Path))
		}
	}
	slices.Sort(problems)
	return problems
}
