// Package schema holds MPREG's wire types (docs/PROTOCOL.md §4–§7), their
// validation, and the error codes of §5 as one Go error type.
//
// Decoding is two steps: package codec turns bytes into a value tree
// (maps, lists, int64, float64, string, []byte, bool, nil), and the Parse*
// functions here turn that tree into typed structs, naming the key at fault
// when a value is missing or of the wrong type. Encoding goes straight from
// the structs (json tags, read by both codecs).
package schema
