package geo

import (
	"bytes"
	_ "embed"
	"fmt"
)

// demoCoverage is the demo world's coverage file. It is parsed on every call
// rather than once into a package variable, so callers own their copy and
// the package keeps no state.
//
//go:embed demo_coverage.csv
var demoCoverage []byte

// LoadDemo parses the embedded demo coverage file: documentation and
// shared-use prefixes spread over seven regions, plus loopback.
func LoadDemo() (*Coverage, error) {
	c, err := LoadCoverage(bytes.NewReader(demoCoverage))
	if err != nil {
		return nil, fmt.Errorf("demo coverage: %w", err)
	}
	return c, nil
}

// Demo is LoadDemo for callers that cannot handle an error. It panics only
// if the embedded file is broken, which TestDemo rules out before a build
// ships.
func Demo() *Coverage {
	c, err := LoadDemo()
	if err != nil {
		panic(err)
	}
	return c
}
