package codec

import "os"

// jsonLib is a temporary A/B switch between the hand-written JSON decoder
// and reader and jsontext's: MPREG_JSONDEC=lib, or SetJSONDecoderLib.
var jsonLib = os.Getenv("MPREG_JSONDEC") == "lib"

// SetJSONDecoderLib switches the JSON decoder and reader (temporary, for
// the A/B benchmark; call with no call in flight).
func SetJSONDecoderLib(lib bool) { jsonLib = lib }
