package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cdnpilot/cdnpilot/steering/manifest"
)

// pathwayFlags collects repeated -pathway ID=BASE-URL flags in order: the
// first is the pathway players start on.
type pathwayFlags []manifest.Pathway

func (p *pathwayFlags) String() string {
	parts := make([]string, len(*p))
	for i, pw := range *p {
		parts[i] = pw.ID + "=" + pw.BaseURL
	}
	return strings.Join(parts, " ")
}

func (p *pathwayFlags) Set(s string) error {
	id, base, ok := strings.Cut(s, "=")
	if !ok || id == "" || base == "" {
		return fmt.Errorf("%q is not ID=BASE-URL", s)
	}
	*p = append(*p, manifest.Pathway{ID: id, BaseURL: base})
	return nil
}

// runManifest rewrites a plain HLS multivariant playlist or DASH MPD for
// content steering. It is a file filter, so it fits a packaging pipeline:
// -in - and -out - are stdin and stdout.
func runManifest(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "", "hls or dash (default: detected from the content)")
	in := fs.String("in", "-", "the plain manifest to read, - for stdin")
	out := fs.String("out", "-", "where to write the rewritten manifest, - for stdout")
	steer := fs.String("steering", "", "base URL of the steering server, e.g. http://127.0.0.1:8080")
	service := fs.String("service", "", "the steered service, as in the config")
	var pathways pathwayFlags
	fs.Var(&pathways, "pathway", "ID=BASE-URL of one CDN, repeatable; the first is the initial pathway")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *steer == "":
		return errors.New("manifest: -steering is required (the steering server's base URL)")
	case *service == "":
		return errors.New("manifest: -service is required")
	case len(pathways) == 0:
		return errors.New("manifest: -pathway ID=BASE-URL is required, once per CDN")
	}
	var src []byte
	var err error
	if *in == "-" {
		src, err = io.ReadAll(os.Stdin)
	} else {
		src, err = os.ReadFile(*in)
	}
	if err != nil {
		return fmt.Errorf("manifest: -in %s: %w", *in, err)
	}
	f := *format
	if f == "" {
		if f = detect(src); f == "" {
			return fmt.Errorf("manifest: cannot tell whether -in %s is HLS or DASH; give -format", *in)
		}
	}
	o := manifest.Options{SteeringBase: *steer, Service: *service, Pathways: pathways}
	var res []byte
	switch f {
	case "hls":
		res, err = manifest.HLS(src, o)
	case "dash":
		res, err = manifest.DASH(src, o)
	default:
		return fmt.Errorf("manifest: -format %q is neither hls nor dash", f)
	}
	if err != nil {
		return fmt.Errorf("manifest: %s %s: %w", f, *in, err)
	}
	if *out == "-" {
		_, err = stdout.Write(res)
	} else {
		err = os.WriteFile(*out, res, 0o644)
	}
	if err != nil {
		return fmt.Errorf("manifest: -out %s: %w", *out, err)
	}
	return nil
}

// detect tells HLS from DASH by the first bytes: playlists start with
// #EXTM3U, MPDs are XML.
func detect(b []byte) string {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	switch {
	case bytes.HasPrefix(b, []byte("#EXTM3U")):
		return "hls"
	case bytes.HasPrefix(b, []byte("<")):
		return "dash"
	}
	return ""
}
