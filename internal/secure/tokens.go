package secure

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Token roles. admin implies the others.
const (
	RoleAdmin   = "admin"   // topics, brokers (decommission), everything below
	RoleProduce = "produce" // register producers and produce (ATM: deposit, withdraw, transfer)
	RoleConsume = "consume" // register consumers, consume, size, read (ATM: balances, status)
)

// Roles are the token roles, for flag help and validation.
var Roles = []string{RoleAdmin, RoleProduce, RoleConsume}

// tokenPrefix makes a quorumq token recognisable in a config file or a leak scanner.
const tokenPrefix = "qq_"

// Grant is what one token may do.
type Grant struct {
	Hash    string    `json:"hash"` // hex SHA-256 of the token; the token itself is never stored
	Roles   []string  `json:"roles"`
	Topics  []string  `json:"topics,omitempty"` // empty: every topic
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
}

// Allows reports whether the grant holds role (admin holds every role; "" is any role)
// for topic ("" when the request names none).
func (g *Grant) Allows(role, topic string) bool {
	if role != "" && !slices.Contains(g.Roles, role) && !slices.Contains(g.Roles, RoleAdmin) {
		return false
	}
	return topic == "" || len(g.Topics) == 0 || slices.Contains(g.Topics, topic)
}

type tokensFile struct {
	Tokens []Grant `json:"tokens"`
}

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// AddToken creates a random 256-bit token with roles (and, when given, only for topics),
// records its hash in the tokens file at path (created when missing) and returns the
// token: it cannot be read back later.
func AddToken(path string, roles, topics []string, name string) (string, error) {
	if len(roles) == 0 {
		return "", errors.New("secure: a token needs a role: " + strings.Join(Roles, ", "))
	}
	for _, r := range roles {
		if !slices.Contains(Roles, r) {
			return "", fmt.Errorf("secure: unknown role %q (want %s)", r, strings.Join(Roles, ", "))
		}
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	var f tokensFile
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &f); err != nil {
			return "", fmt.Errorf("secure: tokens file %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	f.Tokens = append(f.Tokens, Grant{Hash: hashToken(token), Roles: roles, Topics: topics, Name: name, Created: time.Now().UTC()})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	// Through a rename, so a process reloading the file never reads half of it.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return "", err
	}
	return token, os.Rename(tmp, path)
}

// Tokens checks bearer tokens against a tokens file. A token added while the process
// runs is seen within reloadEvery.
type Tokens struct {
	path string

	mu      sync.Mutex
	grants  map[string]*Grant // by hash
	modTime time.Time
	checked time.Time
}

const reloadEvery = time.Second

// LoadTokens reads the tokens file at path.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tokens) load() error {
	st, err := os.Stat(t.path)
	if err != nil {
		return fmt.Errorf("secure: tokens file: %w (create one with quorumq token create)", err)
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("secure: tokens file: %w", err)
	}
	var f tokensFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("secure: tokens file %s: %w", t.path, err)
	}
	grants := make(map[string]*Grant, len(f.Tokens))
	for i := range f.Tokens {
		grants[f.Tokens[i].Hash] = &f.Tokens[i]
	}
	t.grants, t.modTime = grants, st.ModTime()
	return nil
}

// Check returns the grant of token, or nil when the token is unknown.
func (t *Tokens) Check(token string) *Grant {
	if token == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.checked) >= reloadEvery {
		t.checked = now
		if st, err := os.Stat(t.path); err == nil && !st.ModTime().Equal(t.modTime) {
			_ = t.load() // a broken edit keeps the tokens we had
		}
	}
	// Looked up by hash: the timing of a miss tells nothing about the token.
	return t.grants[hashToken(token)]
}
