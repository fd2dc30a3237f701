package deploy

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/agent"
)

var durationType = reflect.TypeFor[time.Duration]()

// walkConfig calls fn for every key of the configuration struct v (see
// configKeys) with the key's value in v. Keys of list items have no value
// (hasValue false).
func walkConfig(v any, prefix string, fn func(key string, value any, hasValue bool)) {
	walkValue(reflect.ValueOf(v), reflect.TypeOf(v), prefix, true, fn)
}

func walkValue(v reflect.Value, t reflect.Type, prefix string, hasValue bool, fn func(string, any, bool)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := keyPath(prefix, name)
		var fv reflect.Value
		if hasValue {
			fv = v.Field(i)
		}
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != durationType:
			walkValue(fv, f.Type, key, hasValue, fn)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			fn(key, valueOf(fv, hasValue), hasValue)
			walkValue(reflect.Value{}, f.Type.Elem(), key+"[]", false, fn)
		default:
			fn(key, valueOf(fv, hasValue), hasValue)
		}
	}
}

func valueOf(v reflect.Value, ok bool) any {
	if !ok {
		return nil
	}
	return v.Interface()
}

// fieldType returns the Go type of a configuration key.
func fieldType(t testing.TB, key string) reflect.Type {
	t.Helper()
	typ := reflect.TypeFor[agent.Config]()
	for part := range strings.SplitSeq(key, ".") {
		list := strings.HasSuffix(part, "[]")
		part = strings.TrimSuffix(part, "[]")
		found := false
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if name == part {
				typ, found = typ.Field(i).Type, true
				break
			}
		}
		if !found {
			t.Fatalf("no configuration key %q", key)
		}
		if list {
			typ = typ.Elem()
		}
	}
	return typ
}

// yamlKeys lists the key paths present in a YAML document, spelled like
// configKeys; mappings inside lists count as "key[].sub".
func yamlKeys(t testing.TB, data []byte) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key := keyPath(prefix, n.Content[i].Value)
				seen[key] = true
				walk(n.Content[i+1], key)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if c.Kind == yaml.MappingNode {
					walk(c, prefix+"[]")
				}
			}
		}
	}
	walk(&doc, "")
	var keys []string
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
