// Package httpjson is the JSON encoder of every quorumq HTTP API (managers, brokers,
// ATMs): a reply ends with a newline, so replies printed one after another (curl in a
// shell) stay apart.
package httpjson

import "encoding/json"

// Line encodes v as JSON followed by a newline.
func Line(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}
