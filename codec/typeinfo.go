package codec

import (
	"cmp"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	timeType            = reflect.TypeFor[time.Time]()
	bytesType           = reflect.TypeFor[[]byte]()
	byteType            = reflect.TypeFor[byte]()
	jsonMarshalerType   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// isBytes reports whether a slice or array type holds bytes.
func isBytes(t reflect.Type) bool { return t.Elem().Kind() == reflect.Uint8 }

// hasMethods reports whether t may have methods that Normalize or Assign
// care about (marshalers, time.Time) or is a struct. Predeclared and
// unnamed composite types have none, which keeps the common case off the
// type cache.
func hasMethods(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface:
		return false
	case reflect.Struct, reflect.Pointer:
		return true
	}
	return t.PkgPath() != ""
}

// typeInfo is what Normalize and Assign need to know about a type; it is
// computed once per type.
type typeInfo struct {
	isTime         bool
	marshalJSON    bool // t implements json.Marshaler
	marshalJSONPtr bool // only *t does
	marshalText    bool // t implements encoding.TextMarshaler
	marshalTextPtr bool // only *t does
	unmarshalJSON  bool // *t implements json.Unmarshaler
	unmarshalText  bool // *t implements encoding.TextUnmarshaler
	fields         *structFields
}

// marshals reports whether values of the type encode through time.Time or
// a marshaler method rather than by kind.
func (ti *typeInfo) marshals() bool {
	return ti.isTime || ti.marshalJSON || ti.marshalJSONPtr || ti.marshalText || ti.marshalTextPtr
}

var typeCache sync.Map // reflect.Type -> *typeInfo

func infoOf(t reflect.Type) *typeInfo {
	if ti, ok := typeCache.Load(t); ok {
		return ti.(*typeInfo)
	}
	pt := reflect.PointerTo(t)
	ti := &typeInfo{
		isTime:        t == timeType,
		marshalJSON:   t.Implements(jsonMarshalerType),
		marshalText:   t.Implements(textMarshalerType),
		unmarshalJSON: pt.Implements(jsonUnmarshalerType),
		unmarshalText: pt.Implements(textUnmarshalerType),
	}
	if t.Kind() != reflect.Pointer {
		ti.marshalJSONPtr = !ti.marshalJSON && pt.Implements(jsonMarshalerType)
		ti.marshalTextPtr = !ti.marshalText && pt.Implements(textMarshalerType)
	}
	if t.Kind() == reflect.Struct {
		ti.fields = typeFields(t)
	}
	actual, _ := typeCache.LoadOrStore(t, ti)
	return actual.(*typeInfo)
}

// field is one encoded field of a struct, possibly promoted from an
// embedded struct (index has one entry per level).
type field struct {
	name      string
	index     []int
	tagged    bool
	omitEmpty bool
	omitZero  bool
	quoted    bool
}

// structFields lists a struct's fields in declaration order, with lookups by
// exact name and by lower-case name (the first field in order wins).
type structFields struct {
	list   []field
	byName map[string]int
	byFold map[string]int
}

// typeFields finds the fields encoding/json would use for t: it walks
// embedded structs breadth first, and of several fields with one name keeps
// the shallowest, then the tagged one, and drops the name when that leaves
// a tie.
func typeFields(t reflect.Type) *structFields {
	type scan struct {
		typ   reflect.Type
		index []int
	}
	var (
		fields           []field
		current          []scan
		next             = []scan{{typ: t}}
		count, nextCount map[reflect.Type]int
		visited          = map[reflect.Type]bool{}
	)
	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, s := range current {
			if visited[s.typ] {
				continue
			}
			visited[s.typ] = true
			for i := 0; i < s.typ.NumField(); i++ {
				sf := s.typ.Field(i)
				if sf.Anonymous {
					ft := sf.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				index := append(slices.Clone(s.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					f := field{name: name, index: index, tagged: name != ""}
					if f.name == "" {
						f.name = sf.Name
					}
					for opt := range strings.SplitSeq(opts, ",") {
						switch opt {
						case "omitempty":
							f.omitEmpty = true
						case "omitzero":
							f.omitZero = true
						case "string":
							switch ft.Kind() {
							case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
								reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
								reflect.Float32, reflect.Float64, reflect.String:
								f.quoted = true
							}
						}
					}
					fields = append(fields, f)
					if count[s.typ] > 1 {
						// Two embeddings of one type at this depth: add a
						// duplicate so that the name is dropped below.
						fields = append(fields, f)
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, scan{typ: ft, index: index})
				}
			}
		}
	}

	slices.SortFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.index), len(b.index)); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	var out []field
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		group := fields[i:j]
		if len(group) == 1 || len(group[0].index) < len(group[1].index) || group[0].tagged != group[1].tagged {
			out = append(out, group[0])
		}
		i = j
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })

	sf := &structFields{
		list:   out,
		byName: make(map[string]int, len(out)),
		byFold: make(map[string]int, len(out)),
	}
	for i, f := range out {
		sf.byName[f.name] = i
		if _, ok := sf.byFold[strings.ToLower(f.name)]; !ok {
			sf.byFold[strings.ToLower(f.name)] = i
		}
	}
	return sf
}
