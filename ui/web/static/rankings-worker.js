// A worker that fetches GET /api/v1/rankings and parses it off the main
// thread: at 300 regions x 50 CDNs the answer is several megabytes, and
// parsing it would stall the page. It posts back only what the pages
// show (no window figures), which is cheap to copy.

self.onmessage = async (e) => {
  const { id, url, token } = e.data;
  try {
    const res = await fetch(url, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store' });
    const text = await res.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (!res.ok) {
      self.postMessage({ id, status: res.status, body, retryAfter: res.headers.get('Retry-After') });
      return;
    }
    self.postMessage({ id, status: res.status, body: compact(body) });
  } catch (err) {
    self.postMessage({ id, error: String(err && err.message ? err.message : err) });
  }
};

function compact(r) {
  return {
    service: r.service,
    version: r.version,
    at: r.at,
    age_seconds: r.age_seconds,
    location: r.location,
    rankings: (r.rankings || []).map(
      (k) =>
        k && {
          scope: k.scope,
          rule: k.rule,
          fired: k.fired,
          choices: (k.choices || []).map((c) => ({
            cdn: c.cdn,
            weight: c.weight,
            score: c.score,
            confidence: c.confidence,
            score_scope: c.score_scope,
            health: c.health,
            leader: c.leader,
            reason: c.reason,
            override: c.override,
            views: c.views,
          })),
        },
    ),
  };
}
