//! Shaping a thread (SPEC §5) from the posts reachable below its root, so
//! that every backend prunes, caps and orders the same way.

use std::collections::HashMap;

use crate::model::{EventId, MAX_THREAD_NODES};

/// A post reached from the thread's root through `parent` links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReachedNode {
    /// The post.
    pub id: EventId,
    /// Its parent (the root's may be anything, or absent).
    pub parent: Option<EventId>,
    /// Distance from the root (the root has 0, and only it).
    pub depth: u32,
    /// Its time.
    pub ts: i64,
    /// Not deleted.
    pub live: bool,
}

/// Chooses the nodes a thread shows: live posts, and deleted posts with a
/// live post anywhere below them (as placeholders); nothing if the root is
/// neither. Keeps the [`MAX_THREAD_NODES`] shallowest by `(depth, ts, id)`.
/// Returns indexes into `nodes` — root first, then by `(ts, id)` — and
/// whether nodes were cut.
pub fn pick_thread_nodes(nodes: &[ReachedNode]) -> (Vec<usize>, bool) {
    let at: HashMap<EventId, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut by_depth: Vec<usize> = (0..nodes.len()).collect();
    by_depth.sort_by_key(|&i| std::cmp::Reverse(nodes[i].depth));
    let mut shown: Vec<bool> = nodes.iter().map(|n| n.live).collect();
    for &i in &by_depth {
        if shown[i] && nodes[i].depth > 0 {
            if let Some(&p) = nodes[i].parent.and_then(|p| at.get(&p)) {
                shown[p] = true;
            }
        }
    }
    let Some(root) = nodes.iter().position(|n| n.depth == 0) else {
        return (Vec::new(), false);
    };
    if !shown[root] {
        return (Vec::new(), false);
    }
    let mut picked: Vec<usize> = (0..nodes.len()).filter(|&i| shown[i]).collect();
    picked.sort_by_key(|&i| (nodes[i].depth, nodes[i].ts, nodes[i].id));
    let truncated = picked.len() > MAX_THREAD_NODES;
    picked.truncate(MAX_THREAD_NODES);
    picked[1..].sort_by_key(|&i| (nodes[i].ts, nodes[i].id));
    (picked, truncated)
}
