// Package manifest rewrites a plain HLS multivariant playlist or DASH MPD so
// that players steer between CDNs: it adds the content steering tag or
// element and one pathway (service location) per CDN.
package manifest

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Pathway is one CDN as players see it: an HLS PATHWAY-ID or DASH
// serviceLocation, and the base URL the media is fetched from through it.
type Pathway struct {
	ID      string
	BaseURL string
}

// Options say where the steering server is and which pathways to add. The
// first pathway is the one players start on before the first steering
// manifest arrives.
type Options struct {
	SteeringBase string // e.g. http://127.0.0.1:8080
	Service      string // the steered service, as in the config
	Pathways     []Pathway
}

// idRE is the HLS pathway charset; DASH allows more, but one id has to work
// for both formats because one steering manifest serves both.
var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// pathway is a validated Pathway with its parsed base URL.
type pathway struct {
	id   string
	base *url.URL
}

// validate checks the options and returns the parsed pathways.
func (o Options) validate() ([]pathway, error) {
	if _, err := httpURL(o.SteeringBase); err != nil {
		return nil, fmt.Errorf("steering base: %w", err)
	}
	if !idRE.MatchString(o.Service) {
		return nil, fmt.Errorf("service %q is not a name ([A-Za-z0-9._-]+)", o.Service)
	}
	if len(o.Pathways) == 0 {
		return nil, errors.New("no pathways: give at least one")
	}
	ps := make([]pathway, 0, len(o.Pathways))
	seen := make(map[string]bool, len(o.Pathways))
	for _, p := range o.Pathways {
		switch {
		case !idRE.MatchString(p.ID):
			return nil, fmt.Errorf("pathway id %q: only A-Z, a-z, 0-9, '.', '-' and '_' are allowed", p.ID)
		case seen[p.ID]:
			return nil, fmt.Errorf("pathway id %q is repeated", p.ID)
		}
		seen[p.ID] = true
		u, err := httpURL(p.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("pathway %s base URL: %w", p.ID, err)
		}
		// Relative URIs resolve against the base per RFC 3986, which drops
		// the last path segment: "https://a/media" + "v0.m3u8" is
		// "https://a/v0.m3u8". Refusing such a base beats a silent 404.
		if !strings.HasSuffix(u.Path, "/") {
			return nil, fmt.Errorf("pathway %s base URL %q: the path must end in /", p.ID, p.BaseURL)
		}
		ps = append(ps, pathway{id: p.ID, base: u})
	}
	return ps, nil
}

// httpURL parses an absolute http(s) URL without query or fragment; an
// empty path becomes "/".
func httpURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", s)
	case u.Host == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%q must not have a query or fragment", s)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// steeringURI is the SERVER-URI / ContentSteering URI. The steering server
// reads ladder_min to demote a pathway whose reported throughput is below
// the lowest rung of the ladder.
func (o Options) steeringURI(ladderMin int64) string {
	return strings.TrimSuffix(o.SteeringBase, "/") + "/steer/" + o.Service +
		"?ladder_min=" + strconv.FormatInt(ladderMin, 10)
}

// onPathway moves a media URI to a pathway: a relative reference resolves
// against the pathway's base URL; an absolute http(s) URL keeps its path and
// query and takes the base's scheme and host, because a CDN in front of the
// origin mirrors the origin's paths.
func onPathway(ref string, p pathway) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("URI %q: %w", ref, err)
	}
	switch {
	case u.Scheme == "" && u.Host == "":
		return p.base.ResolveReference(u).String(), nil
	case u.Scheme == "http" || u.Scheme == "https":
		u.Scheme, u.Host, u.User = p.base.Scheme, p.base.Host, p.base.User
		return u.String(), nil
	case u.Scheme == "":
		// A network-path reference ("//host/x") names a host without a
		// scheme; treat it like an absolute URL.
		u.Scheme, u.Host, u.User = p.base.Scheme, p.base.Host, p.base.User
		return u.String(), nil
	default:
		return "", fmt.Errorf("URI %q: scheme %q cannot be put on a pathway", ref, u.Scheme)
	}
}
