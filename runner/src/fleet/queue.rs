//! SQS queues: batched sends within the message size limit, long-poll receives, leases
//! (visibility) extended, released or ended, and queues created with a dead-letter queue.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::aws::describe;

/// SQS's limit on one message, and on one batch send.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Entries per batch call.
pub const MAX_BATCH: usize = 10;

/// A queue, by URL.
#[derive(Clone)]
pub struct Queue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

/// A received message and its lease.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub receipt: String,
    pub message_id: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
}

/// Queue depth as SQS reports it (approximate by nature).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Queue {
    /// Resolves a queue given by URL (`https://...`, `http://...`) or by name.
    pub async fn resolve(sqs: &aws_sdk_sqs::Client, url_or_name: &str) -> anyhow::Result<Queue> {
        let url = if url_or_name.starts_with("https://") || url_or_name.starts_with("http://") {
            url_or_name.to_string()
        } else {
            sqs.get_queue_url()
                .queue_name(url_or_name)
                .send()
                .await
                .map_err(|e| anyhow!("cannot find the queue `{url_or_name}`: {}", describe(&e)))?
                .queue_url()
                .ok_or_else(|| anyhow!("no URL for the queue `{url_or_name}`"))?
                .to_string()
        };
        Ok(Queue {
            sqs: sqs.clone(),
            url,
        })
    }

    /// Sends bodies in batches of at most 10 entries and 256 KiB. A body over the limit is
    /// an error (the caller moves big payloads to S3 first).
    pub async fn send_all(&self, bodies: &[String]) -> anyhow::Result<()> {
        for body in bodies {
            if body.len() > MAX_MESSAGE_BYTES {
                bail!(
                    "a message of {} bytes is over SQS's {MAX_MESSAGE_BYTES}-byte limit",
                    body.len()
                );
            }
        }
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len()
                && end - start < MAX_BATCH
                && bytes + bodies[end].len() <= MAX_MESSAGE_BYTES
            {
                bytes += bodies[end].len();
                end += 1;
            }
            self.send_batch(&bodies[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn send_batch(&self, bodies: &[String]) -> anyhow::Result<()> {
        let mut remaining: Vec<(usize, &String)> = bodies.iter().enumerate().collect();
        // Entries that fail on the SQS side (throttling, internal errors) are retried; the
        // SDK's own retries cover whole-request failures.
        for attempt in 0..5 {
            let entries = remaining
                .iter()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(body.as_str())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| anyhow!("sending to {}: {}", self.url, describe(&e)))?;
            let failed = output.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if failed.iter().any(|f| f.sender_fault) {
                bail!(
                    "sending to {}: rejected: {}",
                    self.url,
                    failed[0].message().unwrap_or(&failed[0].code)
                );
            }
            let ids: Vec<&str> = failed.iter().map(|f| f.id.as_str()).collect();
            remaining.retain(|(i, _)| ids.contains(&format!("m{i}").as_str()));
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
        bail!(
            "sending to {}: {} messages still failing after retries",
            self.url,
            remaining.len()
        )
    }

    pub async fn send(&self, body: &str) -> anyhow::Result<()> {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| anyhow!("sending to {}: {}", self.url, describe(&e)))?;
        Ok(())
    }

    /// Long-polls for up to `max` (1-10) messages, waiting up to `wait_seconds` (0-20).
    /// `visibility` overrides the queue's visibility timeout for these messages.
    pub async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility: Option<i32>,
    ) -> anyhow::Result<Vec<Received>> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_seconds.clamp(0, 20))
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| anyhow!("receiving from {}: {}", self.url, describe(&e)))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    body: m.body()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receive_count,
                })
            })
            .collect())
    }

    /// Sets a message's remaining invisibility: extend a lease (`seconds` > 0) or release it
    /// now (0) so another consumer takes it at once.
    pub async fn set_visibility(&self, receipt: &str, seconds: i32) -> anyhow::Result<()> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds.clamp(0, 43_200))
            .send()
            .await
            .map_err(|e| anyhow!("changing visibility on {}: {}", self.url, describe(&e)))?;
        Ok(())
    }

    pub async fn delete(&self, receipt: &str) -> anyhow::Result<()> {
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| anyhow!("deleting from {}: {}", self.url, describe(&e)))?;
        Ok(())
    }

    /// Deletes messages in batches of 10; returns how many could not be deleted (a stale
    /// receipt: the message was handed to someone else since).
    pub async fn delete_all(&self, receipts: &[String]) -> anyhow::Result<usize> {
        let mut failed = 0;
        for chunk in receipts.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{i}"))
                        .receipt_handle(r)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| anyhow!("deleting from {}: {}", self.url, describe(&e)))?;
            for f in output.failed() {
                tracing::warn!(
                    "could not delete a message from {}: {} {}",
                    self.url,
                    f.code,
                    f.message().unwrap_or_default()
                );
            }
            failed += output.failed().len();
        }
        Ok(failed)
    }

    pub async fn attributes(&self) -> anyhow::Result<HashMap<String, String>> {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| anyhow!("reading the attributes of {}: {}", self.url, describe(&e)))?;
        Ok(output
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn depth(&self) -> anyhow::Result<Depth> {
        let a = self.attributes().await?;
        let get = |name: &str| a.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Depth {
            visible: get("ApproximateNumberOfMessages"),
            in_flight: get("ApproximateNumberOfMessagesNotVisible"),
            delayed: get("ApproximateNumberOfMessagesDelayed"),
        })
    }

    /// The dead-letter queue named by this queue's redrive policy, if any.
    pub async fn dead_letter_queue(&self) -> anyhow::Result<Option<Queue>> {
        let attributes = self.attributes().await?;
        let Some(policy) = attributes.get("RedrivePolicy") else {
            return Ok(None);
        };
        let policy: serde_json::Value = serde_json::from_str(policy)
            .map_err(|e| anyhow!("the redrive policy of {} is not JSON: {e}", self.url))?;
        let Some(arn) = policy.get("deadLetterTargetArn").and_then(|v| v.as_str()) else {
            return Ok(None);
        };
        let name = arn.rsplit(':').next().unwrap_or(arn);
        Ok(Some(Queue::resolve(&self.sqs, name).await?))
    }

    pub async fn arn(&self) -> anyhow::Result<String> {
        self.attributes()
            .await?
            .remove("QueueArn")
            .ok_or_else(|| anyhow!("{} has no QueueArn attribute", self.url))
    }
}

/// Creates a queue (visibility timeout in seconds) with a dead-letter queue `<name>-dlq` that
/// receives a message after `max_receives` deliveries. Returns (queue, dead-letter queue).
/// Idempotent for the same settings. Production queues come from scripts/aws/.
pub async fn create_with_dead_letter(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_seconds: u32,
    max_receives: u32,
) -> anyhow::Result<(Queue, Queue)> {
    let dlq = create(sqs, &format!("{name}-dlq"), visibility_seconds, None).await?;
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq.arn().await?,
        "maxReceiveCount": max_receives.to_string(),
    });
    let queue = create(sqs, name, visibility_seconds, Some(policy.to_string())).await?;
    Ok((queue, dlq))
}

/// Creates a queue without a dead-letter queue (e.g. the done queue).
pub async fn create(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_seconds: u32,
    redrive_policy: Option<String>,
) -> anyhow::Result<Queue> {
    let mut request = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_seconds.to_string(),
        )
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600");
    if let Some(policy) = redrive_policy {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    let output = request
        .send()
        .await
        .map_err(|e| anyhow!("creating the queue {name}: {}", describe(&e)))?;
    Ok(Queue {
        sqs: sqs.clone(),
        url: output
            .queue_url()
            .ok_or_else(|| anyhow!("no URL for the new queue {name}"))?
            .to_string(),
    })
}
