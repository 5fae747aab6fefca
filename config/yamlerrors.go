package config

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decoding errors of go-yaml name Go types ("field max_call not found in
// type config.Limit", "cannot unmarshal !!str `x` into int64") and a line,
// never the field. describeDecodeError turns each into
// "file:line: path.to.field: what is wrong and what is allowed".

var (
	yamlLine      = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownField  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	cannotDecode  = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
	cannotDecodeK = regexp.MustCompile(`^cannot unmarshal !!(\w+) into (\S+)$`)
)

// describeDecodeError rewrites err, a decoding error of data into a Config,
// message by message.
func describeDecodeError(name string, root *yaml.Node, err error) string {
	raw := yamlErrorPrefix.ReplaceAllString(err.Error(), "")
	var out []string
	for _, part := range strings.Split(raw, "\n") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		m := yamlLine.FindStringSubmatch(part)
		if m == nil {
			out = append(out, name+": "+part)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := strings.TrimPrefix(m[2], "line "+m[1]+": ") // custom unmarshalers repeat it
		if mm := yamlLine.FindStringSubmatch(msg); mm != nil {
			msg = mm[2]
		}
		path := pathAtLine(root, line)
		switch {
		case unknownField.MatchString(msg):
			f := unknownField.FindStringSubmatch(msg)[1]
			parent := path
			if len(path) > 0 && path[len(path)-1] == f {
				parent = path[:len(path)-1]
			} else {
				path = append(path, f)
			}
			msg = "unknown field"
			if allowed := yamlFields(typeAtPath(reflect.TypeOf(Config{}), parent)); len(allowed) > 0 {
				msg += "; allowed here: " + strings.Join(allowed, ", ")
			}
		case cannotDecode.MatchString(msg):
			mm := cannotDecode.FindStringSubmatch(msg)
			msg = fmt.Sprintf("must be %s, got %q", kindName(mm[3]), mm[2])
		case cannotDecodeK.MatchString(msg):
			mm := cannotDecodeK.FindStringSubmatch(msg)
			msg = fmt.Sprintf("must be %s, got a %s", kindName(mm[2]), yamlKindName(mm[1]))
		}
		where := fmt.Sprintf("%s:%d", name, line)
		if len(path) > 0 {
			where += ": " + strings.Join(path, ".")
		}
		out = append(out, where+": "+msg)
	}
	return strings.Join(out, "; ")
}

// pathAtLine returns the path of mapping keys (and list indexes) to the
// deepest node on line.
func pathAtLine(root *yaml.Node, line int) []string {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	var path []string
	for {
		switch n.Kind {
		case yaml.MappingNode:
			next := -1
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Line <= line {
					next = i
				}
			}
			if next < 0 {
				return path
			}
			path = append(path, n.Content[next].Value)
			if n.Content[next].Line == line {
				return path
			}
			n = n.Content[next+1]
		case yaml.SequenceNode:
			next := -1
			for i, c := range n.Content {
				if c.Line <= line {
					next = i
				}
			}
			if next < 0 {
				return path
			}
			path = append(path, strconv.Itoa(next))
			n = n.Content[next]
		default:
			return path
		}
	}
}

// typeAtPath follows path through t's yaml fields, map values and list
// elements; nil when it leaves what reflection can follow.
func typeAtPath(t reflect.Type, path []string) reflect.Type {
	for _, p := range path {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil {
			return nil
		}
		switch t.Kind() {
		case reflect.Map, reflect.Slice:
			t = t.Elem()
		case reflect.Struct:
			var next reflect.Type
			for i := 0; i < t.NumField(); i++ {
				if yamlName(t.Field(i)) == p {
					next = t.Field(i).Type
				}
			}
			t = next
		default:
			return nil
		}
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// yamlFields lists the YAML field names of struct type t, sorted.
func yamlFields(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "" && n != "-" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

// kindName says in words what a Go type named by go-yaml holds.
func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."), strings.HasPrefix(goType, "envoyrls."):
		return "a mapping"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	return "another kind of value"
}

func yamlKindName(tag string) string {
	switch tag {
	case "seq":
		return "list"
	case "map":
		return "mapping"
	case "str":
		return "string"
	}
	return tag
}
