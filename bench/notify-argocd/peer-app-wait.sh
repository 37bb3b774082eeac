#!/bin/sh
# The peer: what `argocd app sync APP && argocd app wait APP --sync --health`
# does, re-enacted with curl + jq against the same API (the argocd CLI cannot
# be built or downloaded on these machines). Like the CLI, it requests a sync,
# then follows the watch stream and stops at the first event that is Synced,
# Healthy and has no pending operation. It does NOT compare revisions, which
# is the known failure notify-argocd avoids.
#   usage: peer-app-wait.sh SERVER_URL APP [sync]   (token in ARGOCD_AUTH_TOKEN)
set -eu
server=$1 app=$2 sync=${3:-}
auth="Authorization: Bearer ${ARGOCD_AUTH_TOKEN:?}"
if [ "$sync" = sync ]; then
  curl -sf -X POST -H "$auth" -H 'content-type: application/json' \
    -d "{\"name\":\"$app\"}" "$server/api/v1/applications/$app/sync" >/dev/null
fi
fifo=$(mktemp -u); mkfifo "$fifo"; trap 'rm -f "$fifo"' EXIT
curl -sN -H "$auth" "$server/api/v1/stream/applications?name=$app" >"$fifo" &
cpid=$!
jq -n -c 'first(inputs | select(.result.application.status.sync.status == "Synced"
      and .result.application.status.health.status == "Healthy"
      and (.result.application.operation == null)) | .result.application.status.sync.revision)' <"$fifo"
kill "$cpid" 2>/dev/null || true
