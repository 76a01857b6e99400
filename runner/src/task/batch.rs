//! Tasks and the batches of records a task hands to the mapper.

use serde::{Deserialize, Serialize};

use crate::logs::Dimensions;
use crate::sandbox::bindings::mapper;
use crate::store::InputFile;

/// A unit of work: an id unique within its job, and the files it reads, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    pub files: Vec<InputFile>,
}

impl TaskSpec {
    /// Compressed bytes of all the task's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Where a record came from, for attribution and for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordRef {
    /// Index of the file in the task.
    pub file: usize,
    /// 1-based line number in the file's uncompressed stream.
    pub line: u64,
}

/// Records of one file, in the shape the mapper takes.
pub struct Batch {
    pub records: Vec<mapper::Submission>,
    pub refs: Vec<RecordRef>,
    pub bytes: usize,
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            records: Vec::new(),
            refs: Vec::new(),
            bytes: 0,
        }
    }

    pub fn push(&mut self, submission: mapper::Submission, at: RecordRef) {
        self.bytes += submission.json.len() + submission.id.len();
        self.records.push(submission);
        self.refs.push(at);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The WIT form of a key's dimensions.
pub fn wit_dimensions(d: &Dimensions) -> mapper::Dimensions {
    mapper::Dimensions {
        reason: d.reason.clone(),
        app_name: d.app_name.clone(),
        channel: d.channel.clone(),
        version: d.version.clone(),
        build_id: d.build_id.clone(),
        submission_date: d.submission_date.clone(),
    }
}
