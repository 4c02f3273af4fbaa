package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

type compiledSchema struct{ s *jsonschema.Schema }

var english = message.NewPrinter(language.English)

// CompileSchema checks an output_schema and compiles it.
func CompileSchema(raw json.RawMessage) (*compiledSchema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("output_schema is not valid JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("output_schema.json", doc); err != nil {
		return nil, fmt.Errorf("output_schema: %v", err)
	}
	s, err := c.Compile("output_schema.json")
	if err != nil {
		return nil, fmt.Errorf("output_schema is not a valid JSON Schema: %v", err)
	}
	return &compiledSchema{s: s}, nil
}

func (c *compiledSchema) validate(raw json.RawMessage) error {
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("result is not valid JSON: %v", err)
	}
	if err := c.s.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("result does not match output_schema: %s", strings.Join(leaves(ve), "; "))
		}
		return err
	}
	return nil
}

func leaves(ve *jsonschema.ValidationError) []string {
	if len(ve.Causes) == 0 {
		loc := strings.Join(ve.InstanceLocation, ".")
		if loc == "" {
			loc = "result"
		}
		return []string{loc + ": " + ve.ErrorKind.LocalizedString(english)}
	}
	var out []string
	for _, c := range ve.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}
