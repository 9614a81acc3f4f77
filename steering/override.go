package steering

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// OverrideKind is what an operator does to a CDN's traffic.
type OverrideKind string

const (
	// OverridePin sends every new view in scope to one CDN, whatever its
	// measured health: the operator knows something the engine does not.
	OverridePin OverrideKind = "pin"
	// OverrideBan removes a CDN from the scope entirely: not even offered
	// as a fallback in content steering.
	OverrideBan OverrideKind = "ban"
	// OverrideDrain gives a CDN no new views; it stays listed last so a
	// player can still fall back to it.
	OverrideDrain OverrideKind = "drain"
	// OverrideWeight fixes one CDN's share; the engine shares the rest.
	OverrideWeight OverrideKind = "weight"
	// OverrideSplit fixes the shares of the listed CDNs (percentages
	// summing to 100); CDNs not listed get none.
	OverrideSplit OverrideKind = "split"
)

// Override is operator state applied by the engine. Precedence, strongest
// first: ban and drain (every matching one applies); then the most
// specific pin or split (ASN over region over service; the newest on a
// tie); then weight overrides of the most specific scope; then measured
// QoE. Expired overrides are ignored.
type Override struct {
	ID      string       `json:"id"`
	Kind    OverrideKind `json:"kind"`
	Service string       `json:"service"`
	Region  string       `json:"region,omitempty"` // empty: every region
	ASN     uint32       `json:"asn,omitempty"`    // 0: every ASN; needs Region
	CDN     string       `json:"cdn,omitempty"`    // pin, ban, drain, weight
	// Weight is the share (0..1) of a weight override.
	Weight float64 `json:"weight,omitempty"`
	// Split is percent per CDN of a split override.
	Split   map[string]float64 `json:"split,omitempty"`
	Reason  string             `json:"reason"`
	Author  string             `json:"author,omitempty"`
	Created time.Time          `json:"created"`
	Expires time.Time          `json:"expires"` // zero: never
}

// OverrideStore is where overrides live (the admin API's durable store).
// The scorer reads the active ones every tick.
type OverrideStore interface {
	Active(ctx context.Context, now time.Time) ([]Override, error)
}

// Validate checks an override against the catalog and names the field
// that is wrong.
func (o Override) Validate(cat Catalog) error {
	svc, ok := cat.service(o.Service)
	if !ok {
		return fmt.Errorf("service: %q is not a configured service", o.Service)
	}
	if o.ASN != 0 && o.Region == "" {
		return fmt.Errorf("asn: an ASN scope needs a region")
	}
	if o.Reason == "" {
		return fmt.Errorf("reason: empty; say why for the audit log")
	}
	if !o.Expires.IsZero() && !o.Created.IsZero() && !o.Expires.After(o.Created) {
		return fmt.Errorf("expires: %s is not after created %s", o.Expires.Format(time.RFC3339), o.Created.Format(time.RFC3339))
	}
	inSvc := func(cdn string) bool {
		for _, c := range svc.CDNs {
			if c == cdn {
				return true
			}
		}
		return false
	}
	switch o.Kind {
	case OverridePin, OverrideBan, OverrideDrain, OverrideWeight:
		if !inSvc(o.CDN) {
			return fmt.Errorf("cdn: %q is not a CDN of service %q", o.CDN, o.Service)
		}
		if len(o.Split) != 0 {
			return fmt.Errorf("split: only for kind split")
		}
		if o.Kind == OverrideWeight {
			if o.Weight < 0 || o.Weight > 1 {
				return fmt.Errorf("weight: %v is outside 0..1", o.Weight)
			}
		} else if o.Weight != 0 {
			return fmt.Errorf("weight: only for kind weight")
		}
	case OverrideSplit:
		if o.CDN != "" {
			return fmt.Errorf("cdn: a split names its CDNs in split")
		}
		if len(o.Split) == 0 {
			return fmt.Errorf("split: empty")
		}
		sum := 0.0
		for c, p := range o.Split {
			if !inSvc(c) {
				return fmt.Errorf("split: %q is not a CDN of service %q", c, o.Service)
			}
			if p < 0 || p > 100 {
				return fmt.Errorf("split: %q has %v, outside 0..100", c, p)
			}
			sum += p
		}
		if sum < 99.99 || sum > 100.01 {
			return fmt.Errorf("split: percentages sum to %s, not 100", strconv.FormatFloat(sum, 'g', -1, 64))
		}
	default:
		return fmt.Errorf("kind: %q is not one of pin, ban, drain, weight, split", o.Kind)
	}
	return nil
}

// matches reports whether the override covers a scope, and how
// specifically (higher is more specific).
func (o Override) matches(sc Scope) (int, bool) {
	if o.Service != sc.Service {
		return 0, false
	}
	switch {
	case o.Region == "":
		return 0, true
	case sc.Level != LevelRegion && sc.Level != LevelASN:
		return 0, false
	case o.Region != sc.Region:
		return 0, false
	case o.ASN == 0:
		return 1, true
	case sc.Level == LevelASN && o.ASN == sc.ASN:
		return 2, true
	}
	return 0, false
}

func (o Override) active(now time.Time) bool { return o.Expires.IsZero() || now.Before(o.Expires) }

func (c Catalog) service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// validOverrides is the overrides the catalog accepts, and an error naming
// each one it refuses. One bad override (a CDN removed from the config
// since it was made) must not keep the others from applying, or from
// ending.
func validOverrides(os []Override, cat Catalog) ([]Override, error) {
	out := make([]Override, 0, len(os))
	var errs []error
	for i, o := range os {
		if err := o.Validate(cat); err != nil {
			errs = append(errs, fmt.Errorf("override %d (%s) refused: %w", i, o.ID, err))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}
