// Package sdk serves the player beacon plugin, cdnpilot.js, at
// GET /sdk/cdnpilot.js: pages load it from the ingest they report to.
package sdk

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

//go:embed cdnpilot.js
var script []byte

// etag is a strong validator of the embedded script, computed once: the
// content only changes with the binary.
var etag = func() string {
	sum := sha256.Sum256(script)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// Path is where the script is served.
const Path = "/sdk/cdnpilot.js"

// Script returns the embedded plugin source.
func Script() []byte { return script }

// Register mounts GET (and HEAD) /sdk/cdnpilot.js on mux.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path, serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages on any origin load it with a plain <script> tag; the header
	// also lets them fetch it (integrity checks, service workers).
	h.Set("Access-Control-Allow-Origin", "*")
	// Short: a fixed plugin reaches every player within minutes, and the
	// ETag makes the revalidation cheap.
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if match(r.Header.Get("If-None-Match")) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(script)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(script)
	}
}

// match implements If-None-Match's weak comparison over a list (RFC 9110
// 13.1.2): "*", or any entry equal to our tag with or without W/.
func match(inm string) bool {
	for t := range strings.SplitSeq(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
