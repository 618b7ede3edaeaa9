package consul

import (
	"fmt"
	"os"
	"strings"
)

// ReadTokenFile reads a token file's first line (Consul's own CONSUL_HTTP_TOKEN_FILE
// format).
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("consul: token file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", fmt.Errorf("consul: token file %s is empty", path)
	}
	return tok, nil
}
