#!/usr/bin/env bash
# Re-deliver Event Grid dead letters to poolsync's eventgrid_resource_events function.
#
# Each dead-letter blob holds the original event(s) plus Event Grid's delivery bookkeeping; the events are
# stripped back to the Event Grid schema and POSTed to the function's Event Grid webhook, exactly the way
# Event Grid delivers them. Replaying is safe: poolsync is idempotent and re-reads current VM/NIC state.
# Needs: az (logged in; Storage Blob Data Contributor on the account, read access to the app's keys), jq, curl.
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: replay-dead-letters.sh -g RESOURCE_GROUP -a FUNCTION_APP -s STORAGE_ACCOUNT
                              [-c CONTAINER] [-p BLOB_PREFIX] [-f FUNCTION_NAME] [--delete] [--dry-run]
  -c  dead-letter container (default: eventgrid-deadletter)
  -p  only blobs whose name starts with this prefix (default: all)
  -f  function to deliver to (default: eventgrid_resource_events)
  --delete   delete each blob after its events were accepted
  --dry-run  print what would be sent, send nothing
USAGE
  exit 2
}

group="" app="" account="" container="eventgrid-deadletter" prefix="" function_name="eventgrid_resource_events"
delete_after=false dry_run=false
while [ $# -gt 0 ]; do
  case "$1" in
    -g) group="$2"; shift 2 ;;
    -a) app="$2"; shift 2 ;;
    -s) account="$2"; shift 2 ;;
    -c) container="$2"; shift 2 ;;
    -p) prefix="$2"; shift 2 ;;
    -f) function_name="$2"; shift 2 ;;
    --delete) delete_after=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    *) usage ;;
  esac
done
[ -n "$group" ] && [ -n "$app" ] && [ -n "$account" ] || usage

# Only the Event Grid schema fields: drop deadLetterReason, deliveryAttempts, lastDeliveryOutcome, ...
to_event_grid_batch='if type == "array" then . else [.] end
  | map({id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion})'

host=$(az functionapp show -g "$group" -n "$app" --query defaultHostName -o tsv)
key=$(az functionapp keys list -g "$group" -n "$app" --query systemKeys.eventgrid_extension -o tsv)
[ -n "$key" ] || { echo "no eventgrid_extension system key on $app (is the function deployed?)" >&2; exit 1; }
url="https://${host}/runtime/webhooks/eventgrid?functionName=${function_name}"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

blobs=$(az storage blob list --auth-mode login --account-name "$account" -c "$container" \
  --prefix "$prefix" --query "[].name" -o tsv)

replayed=0 failed=0
while IFS= read -r blob; do
  [ -n "$blob" ] || continue
  az storage blob download --auth-mode login --account-name "$account" -c "$container" -n "$blob" \
    -f "$workdir/blob.json" --no-progress -o none
  jq -c "$to_event_grid_batch" "$workdir/blob.json" > "$workdir/batch.json"
  count=$(jq length "$workdir/batch.json")
  if $dry_run; then
    echo "would replay $count event(s) from $blob"
    continue
  fi
  if curl -fsS -o /dev/null -X POST "${url}&code=${key}" \
      -H "Content-Type: application/json" -H "aeg-event-type: Notification" \
      --data-binary "@$workdir/batch.json"; then
    replayed=$((replayed + 1))
    echo "replayed $count event(s) from $blob"
    if $delete_after; then
      az storage blob delete --auth-mode login --account-name "$account" -c "$container" -n "$blob" -o none
    fi
  else
    failed=$((failed + 1))
    echo "FAILED to replay $blob (kept)" >&2
  fi
done <<< "$blobs"

echo "done: $replayed blob(s) replayed, $failed failed"
[ "$failed" -eq 0 ]
