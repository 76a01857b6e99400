//! Cutting the listed inputs into tasks.

use crate::store::InputFile;
use crate::task::TaskSpec;

/// How big a task may get.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Compressed bytes per task at most (a single larger file is a task of its own).
    pub max_task_bytes: u64,
    /// Files per task at most.
    pub max_task_files: usize,
    /// Tasks to aim for, so that every worker has work and a straggler is small:
    /// tasks are cut smaller than `max_task_bytes` when the input is small.
    pub target_tasks: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_task_bytes: 256 << 20,
            max_task_files: 256,
            target_tasks: 8,
        }
    }
}

/// Groups files (in key order) into tasks with ids `t000000`, `t000001`...
pub fn plan_tasks(mut files: Vec<InputFile>, options: &PlanOptions) -> Vec<TaskSpec> {
    files.sort_by(|a, b| a.key.cmp(&b.key));
    let total: u64 = files.iter().map(|f| f.size).sum();
    let per_task =
        (total / options.target_tasks.max(1) as u64).clamp(1, options.max_task_bytes.max(1));
    let max_files = options.max_task_files.max(1);
    let mut tasks: Vec<Vec<InputFile>> = Vec::new();
    let mut current: Vec<InputFile> = Vec::new();
    let mut current_bytes = 0;
    for file in files {
        let full = !current.is_empty()
            && (current_bytes + file.size > per_task || current.len() >= max_files);
        if full {
            tasks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += file.size;
        current.push(file);
    }
    if !current.is_empty() {
        tasks.push(current);
    }
    tasks
        .into_iter()
        .enumerate()
        .map(|(i, files)| TaskSpec {
            id: format!("t{i:06}"),
            files,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Dimensions;

    fn file(key: &str, size: u64) -> InputFile {
        InputFile {
            key: key.to_string(),
            path: key.into(),
            size,
            dimensions: Dimensions {
                reason: "r".into(),
                app_name: "a".into(),
                channel: "c".into(),
                version: "v".into(),
                build_id: "b".into(),
                submission_date: "d".into(),
            },
        }
    }

    #[test]
    fn every_file_lands_in_exactly_one_task_within_the_caps() {
        let files: Vec<InputFile> = (0..50).map(|i| file(&format!("k{i:03}"), 10 + i)).collect();
        let options = PlanOptions {
            max_task_bytes: 100,
            max_task_files: 4,
            target_tasks: 2,
        };
        let tasks = plan_tasks(files.clone(), &options);
        let keys: Vec<&str> = tasks
            .iter()
            .flat_map(|t| t.files.iter().map(|f| f.key.as_str()))
            .collect();
        let expected: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, expected);
        for task in &tasks {
            assert!(task.files.len() <= 4);
            assert!(task.bytes() <= 100 || task.files.len() == 1);
        }
        assert_eq!(tasks[0].id, "t000000");
    }

    #[test]
    fn small_inputs_are_spread_over_the_target() {
        let files: Vec<InputFile> = (0..16).map(|i| file(&format!("k{i:02}"), 1000)).collect();
        let options = PlanOptions {
            max_task_bytes: 1 << 30,
            max_task_files: 1000,
            target_tasks: 8,
        };
        assert_eq!(plan_tasks(files, &options).len(), 8);
    }

    #[test]
    fn a_file_over_the_cap_is_a_task_of_its_own() {
        let files = vec![file("a", 10), file("b", 500), file("c", 10)];
        let options = PlanOptions {
            max_task_bytes: 100,
            max_task_files: 10,
            target_tasks: 1,
        };
        let sizes: Vec<usize> = plan_tasks(files, &options)
            .iter()
            .map(|t| t.files.len())
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }
}
