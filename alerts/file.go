package alerts

import (
	"fmt"
	"os"

	"github.com/goccy/go-yaml"
)

// File is the alerts config file (YAML; docs/alerts.md).
type File struct {
	Rules []Rule `yaml:"rules"`
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// LoadFile reads and checks a config file. Every rule must pass Check;
// ids must be unique per org and env. An error names the rule and field.
func LoadFile(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("alerts config: %w", err)
	}
	return ParseFile(b)
}

// ParseFile is LoadFile on the file's bytes.
func ParseFile(b []byte) ([]Rule, error) {
	var f File
	if err := yaml.UnmarshalWithOptions(b, &f, yaml.DisallowUnknownField(), yaml.Strict()); err != nil {
		return nil, fmt.Errorf("alerts config: %s", yaml.FormatError(err, false, true))
	}
	seen := map[string]bool{}
	for i := range f.Rules {
		r := &f.Rules[i]
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("alerts config: rules[%d] (%s): %w", i, r.ID, err)
		}
		k := ruleKey(r.Org, r.Env, r.ID)
		if seen[k] {
			return nil, fmt.Errorf("alerts config: rules[%d]: id %q given twice for %s/%s", i, r.ID, r.Org, r.Env)
		}
		seen[k] = true
		r.Source = "file"
	}
	return f.Rules, nil
}
