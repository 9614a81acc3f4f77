/*! cdnpilot player beacon plugin. Apache-2.0. No dependencies, no build step.
 *
 * Reports QoE beacons (docs/BEACONS.md) from hls.js or dash.js to a
 * cdnpilot ingest, and tells which CDN (content steering pathway) served
 * the media. Usage (docs/PLAYERS.md):
 *
 *   var view = cdnpilot.attachHls(hls, video, {endpoint: 'https://ingest.example', service: 'vod'});
 *   var view = cdnpilot.attachDash(player, video, {endpoint: ..., service: 'vod'});
 *   view.end();   // on teardown; pagehide and hls.destroy() do it too
 *
 * It never throws into the player: every callback is guarded, and beacons
 * that cannot be delivered are dropped once the bounded queue is full.
 */
(function (global) {
  'use strict';

  var SDK_VERSION = '1.0.0';
  var MAX_QUEUE = 500; // beacons held while the ingest is unreachable
  var MAX_BATCH = 100; // beacons per request, well under 64 KiB
  var MAX_BACKOFF_MS = 60000;
  var NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
  var ID_RE = /^[A-Za-z0-9\-_.:=+/]{1,64}$/;

  function now() { return Date.now(); }
  function mono() { return (global.performance && performance.now) ? performance.now() : Date.now(); }

  function randomId() {
    try {
      if (global.crypto && crypto.randomUUID) return crypto.randomUUID();
      if (global.crypto && crypto.getRandomValues) {
        var b = new Uint8Array(16);
        crypto.getRandomValues(b);
        var s = '';
        for (var i = 0; i < b.length; i++) s += (b[i] + 256).toString(16).slice(1);
        return s;
      }
    } catch (e) { /* fall through */ }
    return String(now()) + '-' + String(Math.random()).slice(2, 12);
  }

  // safe wraps a callback the player or the page will call, so that a bug
  // here can never break playback.
  function safe(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { return undefined; }
    };
  }

  function hostOf(url) {
    try { return new URL(url, global.location && location.href).host; } catch (e) { return ''; }
  }

  // cleanName turns anything into a valid cdn/pathway name, or ''.
  function cleanName(s) {
    if (typeof s !== 'string') return '';
    s = s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
    return NAME_RE.test(s) ? s : '';
  }

  function int(x) {
    x = Math.round(Number(x));
    return isFinite(x) && x > 0 ? x : 0;
  }

  // Views by view id: cmcdConfig, called before the player exists, and
  // attach share the current CDN through it.
  var views = {};

  function endpointOf(opts) {
    return String(opts.endpoint || '').replace(/\/+$/, '');
  }

  // ---- transport ---------------------------------------------------------

  function Sender(endpoint, flushMs, onBeacon) {
    this.url = endpoint + '/v1/beacons';
    this.queue = [];
    this.inflight = false;
    this.backoff = 0;
    this.retryAt = 0;
    this.onBeacon = onBeacon;
    this.dropped = 0;
    var self = this;
    this.timer = setInterval(safe(function () { self.flush(); }), flushMs);
  }

  Sender.prototype.push = function (b) {
    if (this.queue.length >= MAX_QUEUE) { this.dropped++; return; }
    this.queue.push(b);
    if (this.onBeacon) { try { this.onBeacon(b); } catch (e) { /* page bug */ } }
  };

  // flush posts one batch. text/plain is a CORS-safelisted type, so no
  // preflight; the ingest accepts it (docs/BEACONS.md).
  Sender.prototype.flush = function () {
    if (this.inflight || this.queue.length === 0 || now() < this.retryAt || typeof fetch !== 'function') return;
    var batch = this.queue.splice(0, MAX_BATCH);
    var self = this;
    this.inflight = true;
    var requeue = function (retryAfterMs) {
      // Put the batch back in front, as much as still fits.
      var room = Math.max(0, MAX_QUEUE - self.queue.length);
      self.dropped += Math.max(0, batch.length - room);
      self.queue = batch.slice(0, room).concat(self.queue);
      self.backoff = Math.min(MAX_BACKOFF_MS, self.backoff ? self.backoff * 2 : 1000);
      self.retryAt = now() + Math.max(self.backoff, retryAfterMs || 0);
    };
    fetch(this.url, {method: 'POST', body: JSON.stringify(batch), keepalive: true,
      headers: {'Content-Type': 'text/plain;charset=UTF-8'}, credentials: 'omit', mode: 'cors'})
      .then(function (r) {
        self.inflight = false;
        if (r.status === 429 || r.status >= 500) {
          requeue(1000 * (parseInt(r.headers.get('Retry-After'), 10) || 0));
        } else {
          // 2xx, or a 4xx that a resend would not fix: done with it.
          self.backoff = 0;
        }
      }, function () { self.inflight = false; requeue(0); })
      .catch(function () { self.inflight = false; });
  };

  // final sends everything left with sendBeacon, which survives the page
  // going away; fetch keepalive is the fallback.
  Sender.prototype.final = function () {
    clearInterval(this.timer);
    while (this.queue.length) {
      var body = JSON.stringify(this.queue.splice(0, MAX_BATCH));
      var ok = false;
      try { ok = !!(global.navigator && navigator.sendBeacon && navigator.sendBeacon(this.url, body)); } catch (e) { ok = false; }
      if (!ok && typeof fetch === 'function') {
        try {
          fetch(this.url, {method: 'POST', body: body, keepalive: true, credentials: 'omit',
            headers: {'Content-Type': 'text/plain;charset=UTF-8'}}).catch(function () {});
        } catch (e) { /* dropped */ }
      }
    }
  };

  // ---- the view ----------------------------------------------------------

  // View tracks one playback on a <video> element: play intent, first
  // frame, play and stall time, and the CDN the media comes from. The
  // player adapters feed it the player-specific facts.
  function View(video, opts, player, playerVersion) {
    var ep = endpointOf(opts);
    this.ok = !!ep && NAME_RE.test(String(opts.service || ''));
    this.video = video;
    this.opts = opts;
    this.id = ID_RE.test(String(opts.viewId || '')) ? String(opts.viewId) : randomId();
    this.base = {service: String(opts.service), player: player, player_version: String(playerVersion || '').slice(0, 32)};
    if (opts.sessionId && ID_RE.test(String(opts.sessionId))) this.base.session_id = String(opts.sessionId);
    if (opts.contentId) this.base.content_id = String(opts.contentId).slice(0, 128);
    this.seq = 0;
    var shared = views[this.id] || (views[this.id] = {cdn: ''});
    this.shared = shared;
    this.cdn = shared.cdn || cleanName(opts.cdn) || '';
    this.host = '';
    this.intentAt = 0; // mono() of the play intent
    this.startupMs = 0;
    this.started = false;
    this.ended = false;
    this.playingSince = 0;
    this.stallSince = 0;
    this.stallSeek = false;
    this.seeking = false;
    this.d = {played: 0, rebuffer: 0, count: 0, seek: 0}; // deltas since the last heartbeat
    this.bitrate = 0;
    this.throughput = 0;
    this.ttfb = 0;
    this.lastError = {};
    this.listeners = [];
    this.pending = [];
    if (!this.ok) return;
    this.sender = new Sender(ep, opts.flushMs > 0 ? opts.flushMs : 3000, opts.onBeacon);
    var self = this;
    this.hbTimer = setInterval(safe(function () { self.heartbeat(); }), opts.heartbeatMs > 0 ? opts.heartbeatMs : 10000);
    this.on(video, 'play', function () { if (!self.intentAt) self.intentAt = mono(); });
    this.on(video, 'playing', function () { self.onPlaying(); });
    this.on(video, 'waiting', function () { self.onWaiting(); });
    this.on(video, 'pause', function () { self.stopPlaying(); });
    this.on(video, 'seeking', function () { self.seeking = true; });
    this.on(video, 'seeked', function () { self.seeking = false; });
    this.on(video, 'ended', function () { self.end(); });
    this.on(global, 'pagehide', function () { self.end(); });
    // The player may have been told to play before attach (autoplay).
    if (video && (!video.paused || video.autoplay)) this.intentAt = mono();
  }

  View.prototype.on = function (target, ev, fn) {
    if (!target || !target.addEventListener) return;
    var g = safe(fn);
    target.addEventListener(ev, g);
    this.listeners.push([target, ev, g]);
  };

  View.prototype.emit = function (type, fields) {
    if (!this.ok || this.ended) return;
    var b = {type: type, view_id: this.id, ts: now(), seq: this.seq++, cdn: this.cdn};
    var k;
    for (k in this.base) b[k] = this.base[k];
    if (this.host) b.host = this.host;
    if (fields) for (k in fields) if (fields[k] !== undefined && fields[k] !== 0 && fields[k] !== '') b[k] = fields[k];
    if (!b.cdn) {
      // Before the first segment the CDN is not known yet: hold the
      // beacon (an early error, say) and stamp it once it is.
      if (this.pending.length < 50) this.pending.push(b);
      return;
    }
    this.sender.push(b);
  };

  // release sends the held beacons with the CDN now known (or 'unknown'
  // when the view ends without one).
  View.prototype.release = function () {
    var p = this.pending;
    this.pending = [];
    for (var i = 0; i < p.length; i++) {
      p[i].cdn = this.cdn || 'unknown';
      if (!p[i].host && this.host) p[i].host = this.host;
      this.sender.push(p[i]);
    }
  };

  // context is what any beacon may carry about the stream right now.
  View.prototype.context = function () {
    return {bitrate_kbps: int(this.bitrate), throughput_kbps: int(this.throughput), ttfb_ms: int(this.ttfb)};
  };

  View.prototype.onPlaying = function () {
    var t = mono();
    if (this.stallSince) {
      var ms = t - this.stallSince;
      if (this.stallSeek) this.d.seek += ms; else this.d.rebuffer += ms;
      this.emit('rebuffer_end', this.stallSeek ? {seek: true, seek_rebuffer_ms: int(ms)} : {rebuffer_ms: int(ms)});
      this.stallSince = 0;
    }
    if (!this.started) {
      this.started = true;
      this.startupMs = int(t - (this.intentAt || t));
      var f = this.context();
      f.startup_ms = this.startupMs;
      this.emit('view_start', f);
    }
    this.playingSince = t;
  };

  View.prototype.stopPlaying = function () {
    if (this.playingSince) {
      this.d.played += mono() - this.playingSince;
      this.playingSince = 0;
    }
  };

  View.prototype.onWaiting = function () {
    // Before the first frame a wait is startup, not a stall.
    if (!this.started || this.stallSince) return;
    this.stopPlaying();
    this.stallSince = mono();
    this.stallSeek = this.seeking || !!(this.video && this.video.seeking);
    if (!this.stallSeek) this.d.count++;
    this.emit('rebuffer_start', this.stallSeek ? {seek: true} : undefined);
  };

  // fold adds the running play or stall time to the deltas, so a long
  // stall shows up in every heartbeat it spans.
  View.prototype.fold = function () {
    var t = mono();
    if (this.playingSince) { this.d.played += t - this.playingSince; this.playingSince = t; }
    if (this.stallSince) {
      if (this.stallSeek) this.d.seek += t - this.stallSince; else this.d.rebuffer += t - this.stallSince;
      this.stallSince = t;
    }
  };

  View.prototype.deltas = function () {
    this.fold();
    var f = this.context();
    f.played_ms = int(this.d.played);
    f.rebuffer_ms = int(this.d.rebuffer);
    f.rebuffer_count = int(this.d.count);
    f.seek_rebuffer_ms = int(this.d.seek);
    try {
      var q = this.video && this.video.getVideoPlaybackQuality && this.video.getVideoPlaybackQuality();
      if (q) f.dropped_frames = int(q.droppedVideoFrames);
    } catch (e) { /* not supported */ }
    this.d = {played: 0, rebuffer: 0, count: 0, seek: 0};
    return f;
  };

  View.prototype.heartbeat = function () {
    if (!this.started || this.ended) return;
    this.emit('heartbeat', this.deltas());
  };

  // media records where a media segment came from. id is the pathway (HLS
  // PATHWAY-ID, DASH serviceLocation) when the player knows it.
  View.prototype.media = function (url, id) {
    // A pathway id is a bare name; dash.js reports the BaseURL itself as
    // the serviceLocation when the MPD names none.
    var name = (typeof id === 'string' && id !== '.' && NAME_RE.test(id)) ? id : '';
    if (!name && typeof this.opts.cdnOf === 'function') {
      try { name = cleanName(this.opts.cdnOf(url)); } catch (e) { name = ''; }
    }
    var host = hostOf(url);
    if (!name) name = cleanName(host);
    if (host) this.host = host.slice(0, 253);
    if (!name || name === this.cdn) return;
    var prev = this.cdn;
    this.cdn = name;
    this.shared.cdn = name;
    if (prev) this.emit('cdn_switch', {prev_cdn: prev});
    else this.release();
  };

  View.prototype.bitrateChange = function (bps) {
    var kbps = int(bps / 1000);
    if (!kbps || kbps === this.bitrate) return;
    var first = !this.bitrate;
    this.bitrate = kbps;
    if (!first) this.emit('bitrate_change', this.context());
  };

  View.prototype.error = function (code, fatal) {
    code = String(code || 'unknown').replace(/[\u0000-\u001f\u007f\ufffd]/g, '').slice(0, 64) || 'unknown';
    // A failing CDN produces bursts of the same non-fatal error: one per
    // code every 5 s is enough to count it.
    var t = mono();
    if (!fatal && this.lastError[code] && t - this.lastError[code] < 5000) return;
    this.lastError[code] = t;
    this.emit('error', {error_code: code, fatal: !!fatal});
    if (fatal) {
      if (!this.cdn) this.cdn = 'unknown';
      this.release();
      this.finish();
    }
  };

  // end sends view_end (once) with the last deltas and stops the view.
  View.prototype.end = function () {
    if (!this.ok || this.ended) return;
    var f = this.deltas();
    if (!this.cdn) this.cdn = 'unknown';
    this.release();
    // Repeated on view_end; omitted (0) means the first frame never
    // showed, which is how the ingest counts exits before video start.
    f.startup_ms = this.startupMs;
    this.emit('view_end', f);
    this.finish();
  };

  View.prototype.finish = function () {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.hbTimer);
    for (var i = 0; i < this.listeners.length; i++) {
      var l = this.listeners[i];
      try { l[0].removeEventListener(l[1], l[2]); } catch (e) { /* gone */ }
    }
    if (this.detach) { try { this.detach(); } catch (e) { /* gone */ } }
    this.sender.final();
  };

  View.prototype.handle = function () {
    var self = this;
    return {
      viewId: this.id,
      cdn: function () { return self.cdn; },
      flush: safe(function () { self.heartbeat(); self.sender.flush(); }),
      end: safe(function () { self.end(); }),
      dropped: function () { return self.sender ? self.sender.dropped : 0; }
    };
  };

  var noop = {viewId: '', cdn: function () { return ''; }, flush: function () {}, end: function () {}, dropped: function () { return 0; }};

  // ---- hls.js ------------------------------------------------------------

  function attachHls(hls, video, opts) {
    try {
      opts = opts || {};
      var Hls = hls && hls.constructor;
      var E = (Hls && Hls.Events) || {};
      var v = new View(video, opts, 'hls.js', Hls && Hls.version);
      if (!v.ok) return noop;
      var subs = [];
      var on = function (name, fn) {
        if (!name || !hls.on) return;
        var g = safe(fn);
        hls.on(name, g);
        subs.push([name, g]);
      };
      var levelOf = function (i) { return (hls.levels && hls.levels[i]) || null; };
      on(E.FRAG_LOADED, function (ev, data) {
        var frag = data && data.frag;
        if (!frag || (frag.type && frag.type !== 'main') || frag.sn === 'initSegment') return;
        var lvl = levelOf(frag.level);
        // The pathway of the level the fragment belongs to is exact; the
        // priority list is only what steering asked for.
        v.media(frag.url, (lvl && lvl.pathwayId) || '');
        var st = frag.stats || (data.part && data.part.stats);
        if (st && st.loading && st.loading.first > 0 && st.loading.start > 0) v.ttfb = st.loading.first - st.loading.start;
        if (hls.bandwidthEstimate > 0) v.throughput = hls.bandwidthEstimate / 1000;
      });
      on(E.FRAG_CHANGED, function (ev, data) {
        var lvl = data && data.frag && levelOf(data.frag.level);
        if (lvl) v.bitrateChange(lvl.bitrate);
      });
      var hostOf = function (u) { try { return new URL(u).host; } catch (e) { return ''; } };
      var resumedAt = -1e9;
      on(E.ERROR, function (ev, data) {
        if (!data) return;
        // hls.js (1.5 to 1.7 at least) blames a fragment error on the
        // pathway in use when the error arrives. A fragment still loading
        // from a CDN that just died fails after the player already moved
        // to the next pathway, so that one is penalized too, and with every
        // pathway penalized the error turns fatal and loading stops on a
        // healthy CDN. Such an error says nothing about the pathway now in
        // use: resume loading there (at most once every 10 s, so a real
        // failure of that pathway still ends the view).
        var frag = data.frag, cur = levelOf(hls.loadLevel);
        if (data.fatal && frag && frag.url && cur && cur.uri && hostOf(frag.url) !== hostOf(cur.uri) &&
            /^fragLoad/.test(String(data.details)) && mono() - resumedAt > 10000 && hls.startLoad) {
          resumedAt = mono();
          v.error(data.details, false);
          hls.startLoad();
          return;
        }
        v.error(data.details || data.type, data.fatal);
      });
      on(E.DESTROYING, function () { v.end(); });
      v.detach = function () {
        for (var i = 0; i < subs.length; i++) { try { hls.off(subs[i][0], subs[i][1]); } catch (e) { /* gone */ } }
      };
      return v.handle();
    } catch (e) {
      return noop;
    }
  }

  // ---- dash.js -----------------------------------------------------------

  function attachDash(player, video, opts) {
    try {
      opts = opts || {};
      var E = (global.dashjs && dashjs.MediaPlayer && dashjs.MediaPlayer.events) || {};
      var ver = '';
      try { ver = player.getVersion(); } catch (e) { ver = ''; }
      var v = new View(video, opts, 'dash.js', ver);
      if (!v.ok) return noop;
      var subs = [];
      var on = function (name, fn) {
        if (!name || !player.on) return;
        var g = safe(fn);
        player.on(name, g);
        subs.push([name, g]);
      };
      on(E.FRAGMENT_LOADING_COMPLETED || 'fragmentLoadingCompleted', function (e) {
        var r = e && e.request;
        if (!r || r.mediaType !== 'video' || r.type === 'InitializationSegment') return;
        // dash.js fires this for failed loads too: a dead CDN's late
        // failure must not take the view back to it.
        if (e.error || !e.response) return;
        v.media(r.url, r.serviceLocation || '');
        if (r.firstByteDate && r.startDate) v.ttfb = r.firstByteDate - r.startDate;
        try {
          var kbps = player.getAverageThroughput('video');
          if (kbps > 0) v.throughput = kbps;
        } catch (err) { /* older API */ }
      });
      on(E.QUALITY_CHANGE_RENDERED || 'qualityChangeRendered', function (e) {
        if (!e || e.mediaType !== 'video') return;
        var rep = e.newRepresentation;
        if (rep && rep.bandwidth) v.bitrateChange(rep.bandwidth);
      });
      on(E.ERROR || 'error', function (e) {
        var err = (e && e.error) || {};
        // dash.js raises ERROR for what it could not recover from; the
        // media element's own error is what stops playback for sure.
        v.error(err.code != null ? 'dash_' + err.code : (err.message || 'dash_error'), !!(video && video.error));
      });
      on(E.PLAYBACK_ERROR || 'playbackError', function (e) {
        v.error('media_' + ((e && e.error && e.error.code) || (video && video.error && video.error.code) || 0), true);
      });
      v.detach = function () {
        for (var i = 0; i < subs.length; i++) { try { player.off(subs[i][0], subs[i][1]); } catch (e) { /* gone */ } }
      };
      // dash.js has no destroy event: reset() tears the stream down.
      on(E.STREAM_TEARDOWN_COMPLETE || 'streamTeardownComplete', function () { v.end(); });
      return v.handle();
    } catch (e) {
      return noop;
    }
  }

  // ---- CMCD v2 event reporting -------------------------------------------

  // cmcdTarget is the /v1/cmcd URL. The ingest takes cdn from the query
  // when a report has no cdn key, which is the case for hls.js and dash.js.
  function cmcdTarget(opts, cdn) {
    var q = 'service=' + encodeURIComponent(String(opts.service || ''));
    if (cdn) q += '&cdn=' + encodeURIComponent(cdn);
    return endpointOf(opts) + '/v1/cmcd?' + q;
  }

  function waitFor(cond, maxMs) {
    return new Promise(function (resolve) {
      var until = now() + maxMs;
      var check = function () {
        var ok = false;
        try { ok = cond(); } catch (e) { ok = true; }
        if (ok || now() >= until) resolve(); else setTimeout(check, 250);
      };
      check();
    });
  }

  // cmcdConfig returns the hls.js `cmcd` config: CMCD v2 with an event
  // target on the ingest. Pass the same viewId to attachHls: the CMCD
  // session id is the view id, and the reports carry the CDN the view is
  // on at send time (hls.js lets a loader rewrite the target URL).
  function cmcdConfig(opts) {
    opts = opts || {};
    var id = ID_RE.test(String(opts.viewId || '')) ? String(opts.viewId) : randomId();
    opts.viewId = id;
    var shared = views[id] || (views[id] = {cdn: cleanName(opts.cdn) || ''});
    var cfg = {
      version: 2,
      sessionId: id,
      eventTargets: [{
        url: cmcdTarget(opts, shared.cdn),
        events: opts.events || ['ps', 'e', 't', 'rr', 'bc'],
        interval: opts.interval > 0 ? opts.interval : 30,
        batchSize: opts.batchSize > 0 ? opts.batchSize : 1
      }],
      loader: function (req) {
        // Reports from before the first segment would have no CDN, and
        // the ingest needs one: hold them until it is known (at most 10 s).
        return waitFor(function () { return !!shared.cdn; }, 10000).then(function () { return send(req); });
      }
    };
    var send = function (req) {
      var url = String(req.url).replace(/([?&])cdn=[^&]*/, '$1cdn=' + encodeURIComponent(shared.cdn || ''));
      if (shared.cdn && url.indexOf('cdn=') < 0) url += '&cdn=' + encodeURIComponent(shared.cdn);
      return fetch(url, {method: req.method || 'POST', headers: req.headers, body: req.body, keepalive: true,
        credentials: 'omit', mode: 'cors'})
        .then(function (r) { return {status: r.status}; }, function () { return {status: 0}; });
    };
    if (opts.contentId) cfg.contentId = String(opts.contentId).slice(0, 128);
    return cfg;
  }

  // dashCmcdSettings returns dash.js settings turning on CMCD v2 event
  // reporting to the ingest: player.updateSettings(cdnpilot.dashCmcdSettings(opts)).
  // dash.js has no loader hook for event targets, so the cdn in the URL
  // is opts.cdn (or none); reports then count under that CDN.
  // No ttfb: dash.js 5.2.1 sends the first byte's epoch time in it (e.g.
  // ttfb=1796494043122), which the ingest refuses as out of range.
  var DASH_EVENT_KEYS = ['sid', 'cid', 'v', 'sf', 'st', 'sta', 'e', 'ts', 'sn', 'h', 'cdn', 'br', 'pb', 'mtp',
    'bl', 'bs', 'bsd', 'msd', 'ec', 'dfa', 'rc', 'url', 'pt', 'tb', 'ltc'];

  function dashCmcdSettings(opts) {
    opts = opts || {};
    var id = ID_RE.test(String(opts.viewId || '')) ? String(opts.viewId) : randomId();
    opts.viewId = id;
    var c = {
      enabled: true, version: 2, sid: id,
      eventTargets: [{
        // dash.js sends no key that is not listed here (not even sid).
        enabled: true, url: cmcdTarget(opts, cleanName(opts.cdn)), enabledKeys: opts.keys || DASH_EVENT_KEYS,
        events: opts.events || ['ps', 'e', 't', 'rr', 'bc'],
        interval: opts.interval > 0 ? opts.interval : 30,
        batchSize: opts.batchSize > 0 ? opts.batchSize : 1
      }]
    };
    if (opts.contentId) c.cid = String(opts.contentId).slice(0, 128);
    return {streaming: {cmcd: c}};
  }

  global.cdnpilot = {
    version: SDK_VERSION,
    attachHls: attachHls,
    attachDash: attachDash,
    cmcdConfig: cmcdConfig,
    dashCmcdSettings: dashCmcdSettings
  };
})(typeof window !== 'undefined' ? window : this);
