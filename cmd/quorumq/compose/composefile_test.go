package compose

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                `yaml:"image"`
	Build       buildSpec             `yaml:"build"`
	Hostname    string                `yaml:"hostname"`
	Command     []string              `yaml:"command"`
	Entrypoint  []string              `yaml:"entrypoint"`
	NetworkMode string                `yaml:"network_mode"`
	Environment envVars               `yaml:"environment"`
	Volumes     []string              `yaml:"volumes"`
	Ports       []string              `yaml:"ports"`
	DependsOn   map[string]dependency `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

// buildSpec is `build: DIR` or `build: {context: DIR, dockerfile: FILE}`.
type buildSpec struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *buildSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain buildSpec
	return n.Decode((*plain)(b))
}

// envVars is `environment:` as a map or as a list of KEY=value.
type envVars map[string]string

func (e *envVars) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		return n.Decode((*map[string]string)(e))
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*e = envVars{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		(*e)[k] = v
	}
	return nil
}

// volumeAt is the source of the service's volume mounted at target.
func (s service) volumeAt(target string) (string, bool) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0], true
		}
	}
	return "", false
}

// flag is the value of --name in the service's command.
func (s service) flag(name string) (string, bool) {
	for i, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(s.Command) {
			return s.Command[i+1], true
		}
	}
	return "", false
}

// subcommand is the quorumq subcommand a service built from the Dockerfile runs.
func (s service) subcommand() string {
	if s.Build.Context == "" || len(s.Command) == 0 {
		return ""
	}
	return s.Command[0]
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return cf
}

// quorumqServices are the names of the services running the image, sorted, by
// subcommand.
func (cf composeFile) quorumqServices() map[string][]string {
	by := map[string][]string{}
	for name, s := range cf.Services {
		if sub := s.subcommand(); sub != "" {
			by[sub] = append(by[sub], name)
		}
	}
	for _, names := range by {
		slices.Sort(names)
	}
	return by
}

// hostPort splits an address that must name a compose service and a port.
func hostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err == nil && (host == "" || port == "") {
		err = fmt.Errorf("address %q: want service:port", addr)
	}
	return host, port, err
}
