package meta

import "testing"

func TestCheck(t *testing.T) {
	newer := Encode(RegisterProducer{Topic: "t"})
	newer[1] = Version + 1
	for _, tc := range []struct {
		name    string
		cmd     []byte
		unknown bool
	}{
		{"known", Encode(RegisterProducer{Topic: "t"}), false},
		{"create topic with retention (version 2)", Encode(CreateTopic{Name: "t", Partitions: 1, Replication: 1, Retention: Retention{Ms: 1}}), false},
		{"create topic version 3", append([]byte{byte(TypeCreateTopic), 3}, '{', '}'), true},
		{"keyed known", Encode(Keyed{Key: "k", Cmd: Encode(RegisterProducer{Topic: "t"})}), false},
		{"too short to tell: malformed", []byte{byte(TypeCreateTopic)}, false},
		{"garbled keyed: malformed", []byte{byte(TypeKeyed), Version, '{'}, false},
		{"newer version", newer, true},
		{"newer type", []byte{200, Version, '{', '}'}, true},
		{"keyed newer version", Encode(Keyed{Key: "k", Cmd: newer}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check(tc.cmd); (err != nil) != tc.unknown {
				t.Fatalf("Check = %v; want unknown=%v", err, tc.unknown)
			}
		})
	}
}
