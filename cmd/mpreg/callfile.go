package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/schema"
)

// maxFileArg bounds a file passed as @FILE: the client's largest value by
// reference.
const maxFileArg = client.DefaultMaxObjectBytes

// argValue reads an argument of mpreg call (ARG, or V of --kw K=V): @FILE
// is the bytes of FILE (@- of stdin), sent as a binary value (by reference
// when it is big); @@… is the string without its first @; anything else
// is JSON when it is valid JSON, else a string.
func argValue(s string, stdin io.Reader) (any, error) {
	switch {
	case strings.HasPrefix(s, "@@"):
		return s[1:], nil
	case s == "@":
		return nil, usagef("%q: want @FILE (a file's bytes), @- (stdin's) or @@… (a string starting with @)", s)
	case s == "@-":
		return readBounded(stdin, "stdin")
	case strings.HasPrefix(s, "@"):
		f, err := os.Open(s[1:])
		if err != nil {
			return nil, usagef("%s: %w", s, err)
		}
		defer func() { _ = f.Close() }()
		return readBounded(f, s[1:])
	}
	return jsonOrString(s), nil
}

// readBounded reads r whole, up to maxFileArg bytes.
func readBounded(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileArg+1))
	switch {
	case err != nil:
		return nil, usagef("read %s: %w", name, err)
	case len(data) > maxFileArg:
		return nil, &schema.Error{Code: schema.CodePayloadTooLarge,
			Message: fmt.Sprintf("%s is larger than max_object_bytes=%d, the largest value passed by reference", name, maxFileArg),
			Details: map[string]any{"limit": "max_object_bytes", "max": int64(maxFileArg)}}
	}
	return data, nil
}

// writeResult writes a result to path: binary as its bytes, any other
// value as the JSON mpreg would print.
func writeResult(path string, v any) error {
	data, ok := v.([]byte)
	if !ok {
		var b bytes.Buffer
		if err := printJSON(&b, v); err != nil {
			return err
		}
		data = b.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// outResult writes the one result of resp to path (mpreg run -o), and
// leaves it out of resp's results.
func outResult(path string, resp *schema.Response) error {
	if len(resp.Results) != 1 {
		return fmt.Errorf("-o %s: the response has %d results; -o takes a request with one (give \"results\" or one sink)", path, len(resp.Results))
	}
	for name, v := range resp.Results {
		if err := writeResult(path, v); err != nil {
			return err
		}
		delete(resp.Results, name)
	}
	return nil
}
