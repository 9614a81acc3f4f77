#!/usr/bin/env bash
# Synthetic viewers against the Compose stack: each round, every viewer posts
# a view_start or a heartbeat to ingest-1 or ingest-2, from an address in one
# of the demo coverage regions (sent as X-Forwarded-For; cdnpilot.yaml trusts
# the compose gateway, which stands in for a load balancer). Each CDN gets
# its own quality per region, so the rankings have something to decide.
#
#   deploy/compose/load.sh [VIEWERS] [ROUNDS]     (defaults 60 and 0 = until Ctrl-C)
#
# INGEST overrides the ingest URLs (space-separated).
set -euo pipefail

viewers=${1:-60}
rounds=${2:-0}
read -r -a ingest <<<"${INGEST:-http://127.0.0.1:8081 http://127.0.0.1:8082}"

# One /16 of each region in internal/geo/demo_coverage.csv.
regions=(eu-west:100.64 eu-central:100.80 us-east:100.92 us-west:100.104 ap-south:100.113 ap-northeast:100.120 sa-east:100.125)
cdns=(cdn-a cdn-b cdn-c)
services=(vod live)

# quality CDN REGION: a startup time (ms) and a rebuffer share (per mille),
# fixed per pair so the CDNs differ by region.
quality() {
  local h
  h=$(printf '%s' "$1/$2" | cksum | cut -d' ' -f1)
  echo $((600 + h % 1400)) $((h / 7 % 40))
}

round=0
while [ "$rounds" -eq 0 ] || [ "$round" -lt "$rounds" ]; do
  now=$(($(date +%s) * 1000))
  for ((v = 0; v < viewers; v++)); do
    region=${regions[v % ${#regions[@]}]}
    cdn=${cdns[(v / ${#regions[@]}) % ${#cdns[@]}]}
    service=${services[v % ${#services[@]}]}
    ip="${region#*:}.$((v % 250)).$((v / 250 % 250 + 1))"
    view="load-$v-$((round / 30))" # a new view every 30 rounds
    read -r startup rebuffer_pm < <(quality "$cdn" "${region%%:*}")
    if [ $((round % 30)) -eq 0 ]; then
      body='{"type":"view_start","view_id":"'$view'","session_id":"s-'$v'","ts":'$now',"seq":0,"service":"'$service'","cdn":"'$cdn'","startup_ms":'$startup',"bitrate_kbps":4500}'
    else
      played=2000
      stalled=$((played * rebuffer_pm / 1000))
      body='{"type":"heartbeat","view_id":"'$view'","session_id":"s-'$v'","ts":'$now',"seq":'$((round % 30))',"service":"'$service'","cdn":"'$cdn'","played_ms":'$played',"rebuffer_ms":'$stalled',"bitrate_kbps":4500,"throughput_kbps":12000,"ttfb_ms":80}'
    fi
    curl -sS -o /dev/null -X POST "${ingest[v % ${#ingest[@]}]}/v1/beacons" \
      -H 'Content-Type: application/json' -H "X-Forwarded-For: $ip" -d "$body" &
  done
  wait
  round=$((round + 1))
  printf '\rround %d: %d beacons posted' "$round" $((round * viewers))
  sleep 2
done
echo
