package tools

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// Deriving the tools' JSON schemas from their Go types (reflection, then
// jsonschema-go's encoder, then normalize) was about 40 % of a server's
// start-up CPU. schemas.txt holds the derived schemas, one per line, keyed
// by a fingerprint of the Go type they come from (every field's name, tags
// and type, recursively): a type that changed no longer matches its line,
// so its schema is derived again at start (slower, never stale). The test
// TestSchemaCache fails when the file differs from what the types derive
// today; `go test ./tools -run TestSchemaCache -update` rewrites it.
//
//go:embed schemas.txt
var schemaCacheText string

// schemaCache is schemas.txt by fingerprint, read once; it is read-only.
var schemaCache = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(schemaCacheText) {
		fp, schema, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		if ok && fp != "" && !strings.HasPrefix(fp, "#") {
			m[fp] = schema
		}
	}
	return m
})

// schemaOf is T's schema: from schemas.txt when T's fingerprint is there,
// else derived (mustSchema).
func schemaOf[T any]() json.RawMessage {
	if s, ok := schemaCache()[fingerprint(reflect.TypeFor[T]())]; ok {
		return json.RawMessage(s)
	}
	return mustSchema[T](true)
}

// outputSchemaOf is outputSchema[Out] from the schemas of schemaOf.
func outputSchemaOf[Out any]() json.RawMessage {
	failures := failureSchemas()
	return joinAnyOf(schemaOf[Out](), failures[0], failures[1])
}

// failureSchemas are the schemas of Refusal and ErrorOut, part of every
// output schema, looked up once.
var failureSchemas = sync.OnceValue(func() [2]json.RawMessage {
	return [2]json.RawMessage{schemaOf[Refusal](), schemaOf[ErrorOut]()}
})

// joinAnyOf is anyOf for alternatives that are compact JSON as
// json.Marshal writes it (schemas.txt's are), without encoding them again:
// the same bytes (TestSchemaCache compares them with anyOf's).
func joinAnyOf(alts ...json.RawMessage) json.RawMessage {
	b := []byte(`{"anyOf":[`)
	for i, a := range alts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a...)
	}
	return append(b, `],"type":"object"}`...)
}

// schemaEntries are the lines schemas.txt needs for a tool of In and Out,
// derived now (for TestSchemaCache).
func schemaEntries[In, Out any]() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		fingerprint(reflect.TypeFor[In]()):       mustSchema[In](true),
		fingerprint(reflect.TypeFor[Out]()):      mustSchema[Out](false),
		fingerprint(reflect.TypeFor[Refusal]()):  mustSchema[Refusal](false),
		fingerprint(reflect.TypeFor[ErrorOut]()): mustSchema[ErrorOut](false),
	}
}

// fingerprint names everything about t that its derived schema depends
// on: for a struct every field's name, tags and type, recursively; the
// package path and name of named types.
func fingerprint(t reflect.Type) string {
	var b strings.Builder
	writeType(&b, t, map[reflect.Type]bool{})
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:16])
}

func writeType(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	b.WriteString(t.Kind().String())
	if t.Name() != "" {
		b.WriteString(" " + t.PkgPath() + "." + t.Name())
		if seen[t] {
			b.WriteString(" ^")
			return
		}
		seen[t] = true
	}
	b.WriteByte('(')
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		writeType(b, t.Elem(), seen)
	case reflect.Array:
		b.WriteString(strconv.Itoa(t.Len()) + " ")
		writeType(b, t.Elem(), seen)
	case reflect.Map:
		writeType(b, t.Key(), seen)
		b.WriteByte(' ')
		writeType(b, t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			writeLen(b, f.Name)
			writeLen(b, string(f.Tag))
			if f.Anonymous {
				b.WriteByte('*')
			}
			writeType(b, f.Type, seen)
			b.WriteByte(';')
		}
	}
	b.WriteByte(')')
}

// writeLen writes s with its length before it, so that no two field lists
// write the same text.
func writeLen(b *strings.Builder, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}
