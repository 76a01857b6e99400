#!/usr/bin/env bash
# Creates the fleet's queues with the aws CLI: a task queue whose redrive policy moves a task
# to <name>-dlq after MAX_RECEIVES deliveries, and a done queue. Prints the three URLs.
#
# Usage: scripts/aws/create-queues.sh NAME [VISIBILITY_SECONDS=120] [MAX_RECEIVES=3]
#   creates NAME-tasks, NAME-tasks-dlq, NAME-done (region/profile from the usual AWS env).
set -euo pipefail
name="${1:?usage: $0 NAME [VISIBILITY_SECONDS] [MAX_RECEIVES]}"
visibility="${2:-120}"
max_receives="${3:-3}"
retention=1209600 # 14 days, the most SQS keeps a message

dlq_url="$(aws sqs create-queue --queue-name "$name-tasks-dlq" \
    --attributes "MessageRetentionPeriod=$retention" --query QueueUrl --output text)"
dlq_arn="$(aws sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)"
redrive="{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"$max_receives\"}"
attributes="$(python3 -c 'import json,sys; print(json.dumps({"VisibilityTimeout": sys.argv[1], "MessageRetentionPeriod": sys.argv[2], "RedrivePolicy": sys.argv[3]}))' \
    "$visibility" "$retention" "$redrive")"
task_url="$(aws sqs create-queue --queue-name "$name-tasks" --attributes "$attributes" \
    --query QueueUrl --output text)"
done_url="$(aws sqs create-queue --queue-name "$name-done" \
    --attributes "VisibilityTimeout=300,MessageRetentionPeriod=$retention" --query QueueUrl --output text)"
echo "TASK_QUEUE_URL=$task_url"
echo "DEAD_LETTER_QUEUE_URL=$dlq_url"
echo "DONE_QUEUE_URL=$done_url"
