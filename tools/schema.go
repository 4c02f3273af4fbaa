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
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		panic(err)
	}
	b, _ = json.Marshal(normalize(tree))
	return b
}

// normalize makes generated schemas plain for strict clients: a bare true
// (any value) becomes {}, and ["null", T] becomes T (we never send null
// where a slice, map or pointer is optional: the field is omitted).
func normalize(v any) any {
	switch x := v.(type) {
	case bool:
		if x {
			return map[string]any{}
		}
		return x
	case map[string]any:
		for k, sub := range x {
			if k == "type" {
				if ts, ok := sub.([]any); ok && len(ts) == 2 {
					for i, t := range ts {
						if t == "null" {
							x[k] = ts[1-i]
						}
					}
				}
				continue
			}
			if k == "required" {
				if rs, ok := sub.([]any); ok && len(rs) == 0 {
					delete(x, k) // an empty list says nothing and costs every client context
				}
				continue
			}
			if k == "enum" || k == "default" {
				continue
			}
			x[k] = normalize(sub)
		}
		return x
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	}
	return v
}

// outputSchema is a tool's output schema: its success shape, or a Refusal,
// or an ErrorOut, so that structuredContent always matches it (clients such
// as the TypeScript SDK validate it on error results too).
func outputSchema[Out any]() json.RawMessage {
	return anyOf(mustSchema[Out](false), mustSchema[Refusal](false), mustSchema[ErrorOut](false))
}

// anyOf is the object schema that is one of alts.
func anyOf(alts ...json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"type": "object", "anyOf": alts})
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
		if f.Type == reflect.TypeFor[json.RawMessage]() {
			// jsonschema-go sees []byte: an array of integers. Use any.
			panic(fmt.Sprintf("tools: field %s.%s is json.RawMessage; declare it as any so its schema is not an array of bytes", t.Name(), f.Name))
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
			case "minItems", "maxItems":
				n, _ := strconv.Atoi(v)
				if k == "minItems" {
					ps.MinItems = &n
				} else {
					ps.MaxItems = &n
				}
			case "enum":
				ps.Enum = nil
				for _, e := range strings.Split(v, "|") {
					ps.Enum = append(ps.Enum, e)
				}
			}
		}
	}
}
