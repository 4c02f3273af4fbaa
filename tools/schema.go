package tools

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
)

// Schemas are derived from the Go types with github.com/google/jsonschema-go
// (the generator mcp-go uses): a field is required unless its json tag has
// omitempty, the `jsonschema:"..."` tag is its description, and objects are
// closed (additionalProperties: false). On top of that, the `schema` tag
// adds constraints, comma-separated:
//
//	schema:"default=20,min=1,max=100"
//	schema:"enum=keep|delete"
//
// Numbers and booleans in default= are written as JSON, anything else as a string.
func mustSchema[T any](input bool) json.RawMessage {
	s, err := jsonschema.For[T](&jsonschema.ForOptions{IgnoreInvalidTypes: true})
	if err != nil {
		panic(fmt.Sprintf("tools: schema for %T: %v", *new(T), err))
	}
	applyTags(reflect.TypeFor[T](), s)
	s.Schema = ""
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("tools: marshal schema for %T: %v", *new(T), err))
	}
	return b
}

func applyTags(t reflect.Type, s *jsonschema.Schema) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice && s.Items != nil {
		applyTags(t.Elem(), s.Items)
		return
	}
	if t.Kind() != reflect.Struct || s.Properties == nil {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		ps := s.Properties[name]
		if ps == nil {
			continue
		}
		applyTags(f.Type, ps)
		tag := f.Tag.Get("schema")
		if tag == "" {
			continue
		}
		for _, part := range strings.Split(tag, ",") {
			k, v, _ := strings.Cut(part, "=")
			switch k {
			case "default":
				if json.Valid([]byte(v)) && v != "" && (v[0] < 'a' || v == "true" || v == "false" || v == "null") {
					ps.Default = json.RawMessage(v)
				} else {
					ps.Default, _ = json.Marshal(v)
				}
			case "min":
				n, _ := strconv.ParseFloat(v, 64)
				ps.Minimum = &n
			case "max":
				n, _ := strconv.ParseFloat(v, 64)
				ps.Maximum = &n
			case "enum":
				ps.Enum = nil
				for _, e := range strings.Split(v, "|") {
					ps.Enum = append(ps.Enum, e)
				}
			}
		}
	}
}
