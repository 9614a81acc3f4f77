// Package web is cdnpilot's operator web UI: plain HTML, CSS and ES modules
// embedded in the binary, talking only to the admin API under /api/v1.
//
// There is no build step: static/ is what the browser gets. The one
// third-party file set, uPlot, is vendored under static/vendor/uplot and
// held byte-identical to its npm package by test.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every answer: scripts, styles and
// data from this origin only, no inline script or style attribute, no
// framing. uPlot styles through the CSSOM, which style-src does not govern.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Prefix is the path the assets are served under; "/" serves index.html.
const Prefix = "/ui/"

// contentTypes by file extension; a file with another extension is served
// as application/octet-stream.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
	".md":   "text/plain; charset=utf-8",
	"":      "text/plain; charset=utf-8", // LICENSE
}

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// handler serves the embedded files from a map built once.
type handler struct {
	assets map[string]asset // by path relative to static/
}

var _ http.Handler = (*handler)(nil)

var load = sync.OnceValue(func() *handler {
	h := &handler{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		h.assets[strings.TrimPrefix(p, "static/")] = asset{body: body, ctype: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a broken build.
		panic("web: read embedded files: " + err.Error())
	}
	return h
})

// Handler serves the UI: GET / is index.html, GET /ui/<file> a file of
// static/, anything else 404. HEAD works as well; other methods get 405.
// Every answer is revalidated (Cache-Control: no-cache) against an ETag
// from the content, so an upgrade is picked up at once and an unchanged
// file costs a 304.
func Handler() http.Handler { return load() }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("Referrer-Policy", "no-referrer")

	var name string
	switch p := r.URL.Path; {
	case p == "/":
		name = "index.html"
	case strings.HasPrefix(p, Prefix):
		name = strings.TrimPrefix(p, Prefix)
	}
	a, ok := h.assets[name]
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd.Set("Content-Type", a.ctype)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304, HEAD without a body,
	// and Range requests.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
