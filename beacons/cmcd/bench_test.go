package cmcd

import "testing"

// hlsjsQuery is the query of testdata/golden/query_hlsjs17_v1_fragment.txt:
// what hls.js 1.7 appends to every segment request in v1 query mode.
const hlsjsQuery = "CMCD=bl%3D21300%2Cbr%3D2149%2Ccid%3D%22bbb%22%2Cd%3D6000%2Cmtp%3D12300%2Cnor%3D%2210904.m4s%22%2Cot%3Dav%2Csf%3Dh%2Csid%3D%221e2ad9f6-5f8d-4b0c-9a43-6f1f0d3c7a21%22%2Cst%3Dv%2Ctb%3D6221"

func BenchmarkParseQuery(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseQuery(hlsjsQuery)
		if err != nil || r.SID == "" {
			b.Fatal(err)
		}
	}
}
