//! Which directories of a list overlap another (one holds or is the other), found in one
//! sorted pass: a plan lists 50,000 sites, and comparing every pair took seconds.

use std::path::{Component, Path};

/// The path as text made of its components, each followed by `/`: one directory holds
/// another exactly when its key is a prefix of the other's (`/srv/a/` of `/srv/a/b/`, not of
/// `/srv/ab/`), the comparison `Path::starts_with` makes.
pub fn dir_key(p: &Path) -> String {
    let mut key = String::with_capacity(p.as_os_str().len() + 1);
    for c in p.components() {
        match c {
            Component::RootDir => {}
            other => {
                key.push_str(&other.as_os_str().to_string_lossy());
            }
        }
        key.push('/');
    }
    key
}

/// For each `(host, directory)` entry, the earliest entry before it in the list on the same
/// host that overlaps it, if any: every entry overlapping an earlier one is named once,
/// against the first it overlaps, however many others it also overlaps.
///
/// Sorted by host and key, the entries a directory holds follow it as one run, so a stack of
/// the current entry's ancestors sees every overlap: an entry's ancestors are on the stack when
/// it comes, and the entries below it have all passed when it leaves the stack. Each stack
/// frame carries the earliest index under it and below it in the stack, so nothing is
/// compared twice: O(n log n) for the sort, linear after it.
pub fn earliest_overlaps(entries: &[(&str, &Path)]) -> Vec<Option<usize>> {
    let keys: Vec<String> = entries.iter().map(|(_, p)| dir_key(p)).collect();
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by(|&a, &b| (entries[a].0, &keys[a], a).cmp(&(entries[b].0, &keys[b], b)));
    struct Frame {
        entry: usize,
        /// The earliest index among this frame and the frames below it (its ancestors).
        ancestors_min: usize,
        /// The earliest index among the entries that came while this frame was on the stack.
        below_min: usize,
    }
    let mut earliest = vec![usize::MAX; entries.len()];
    let mut stack: Vec<Frame> = Vec::new();
    let pop = |stack: &mut Vec<Frame>, earliest: &mut [usize]| {
        let frame = stack.pop().expect("a frame");
        let e = &mut earliest[frame.entry];
        *e = (*e).min(frame.below_min);
        if let Some(parent) = stack.last_mut() {
            parent.below_min = parent.below_min.min(frame.below_min).min(frame.entry);
        }
    };
    for &i in &order {
        while let Some(top) = stack.last() {
            let t = top.entry;
            if entries[t].0 == entries[i].0 && keys[i].starts_with(&keys[t]) {
                break;
            }
            pop(&mut stack, &mut earliest);
        }
        let ancestors_min = stack.last().map_or(usize::MAX, |f| f.ancestors_min);
        earliest[i] = ancestors_min;
        stack.push(Frame {
            entry: i,
            ancestors_min: ancestors_min.min(i),
            below_min: usize::MAX,
        });
    }
    while !stack.is_empty() {
        pop(&mut stack, &mut earliest);
    }
    earliest
        .into_iter()
        .enumerate()
        .map(|(i, e)| (e < i).then_some(e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(list: &[(&str, &str)]) -> Vec<Option<usize>> {
        let entries: Vec<(&str, &Path)> = list.iter().map(|(h, p)| (*h, Path::new(*p))).collect();
        earliest_overlaps(&entries)
    }

    /// Every pair compared, as before: the reference the sorted pass must agree with.
    fn quadratic(list: &[(&str, &str)]) -> Vec<Option<usize>> {
        (0..list.len())
            .map(|i| {
                (0..i).find(|&j| {
                    list[i].0 == list[j].0 && {
                        let (a, b) = (Path::new(list[i].1), Path::new(list[j].1));
                        a.starts_with(b) || b.starts_with(a)
                    }
                })
            })
            .collect()
    }

    #[test]
    fn keys_compare_by_components() {
        assert_eq!(dir_key(Path::new("/srv/a")), "/srv/a/");
        assert_eq!(dir_key(Path::new("/srv//a/./b/")), "/srv/a/b/");
        assert_eq!(dir_key(Path::new("/")), "/");
        assert_eq!(dir_key(Path::new("srv/a")), "srv/a/");
    }

    #[test]
    fn a_directory_overlaps_what_it_holds_and_nothing_that_only_starts_like_it() {
        // `/srv/a` holds `/srv/a/b`, whichever comes first in the plan; `/srv/ab` and
        // `/srv/a-b` only share a prefix of text (`-` sorts before `/`, `b` after it).
        let list = [
            ("h", "/srv/ab"),
            ("h", "/srv/a-b"),
            ("h", "/srv/a/b"),
            ("h", "/srv/a"),
            ("h", "/srv/a.b/c"),
        ];
        assert_eq!(overlaps(&list), vec![None, None, None, Some(2), None]);
        assert_eq!(overlaps(&list), quadratic(&list));
        // The ancestor first: the one written later is the one named.
        assert_eq!(
            overlaps(&[("h", "/srv/a"), ("h", "/srv/ab"), ("h", "/srv/a/b")]),
            vec![None, None, Some(0)]
        );
    }

    #[test]
    fn same_directory_trailing_slash_root_and_other_hosts() {
        let list = [
            ("h", "/srv/a/"),
            ("g", "/srv/a"),
            ("h", "/srv/a"),
            ("h", "/srv/b"),
            ("h", "/"),
            ("g", "/srv/a/x/y"),
        ];
        assert_eq!(
            overlaps(&list),
            vec![None, None, Some(0), None, Some(0), Some(1)]
        );
        assert_eq!(overlaps(&list), quadratic(&list));
    }

    #[test]
    fn every_overlap_is_named_against_the_earliest_one() {
        // A deep chain and a fan-out, in a shuffled order: each entry names the first entry of
        // the list it overlaps, found below it, above it or equal to it.
        let list = [
            ("h", "/w/x/y/z"),
            ("h", "/w/q"),
            ("h", "/w/x/y"),
            ("h", "/w/x/y/z/deeper"),
            ("h", "/w/x2"),
            ("h", "/w"),
            ("h", "/w/x"),
            ("h", "/w/x/y/z"),
            ("h", "/v"),
            ("h", "/w/q/r"),
        ];
        assert_eq!(overlaps(&list), quadratic(&list));
        assert_eq!(
            overlaps(&list)[5],
            Some(0),
            "`/w` holds everything before it"
        );
        assert_eq!(overlaps(&list)[9], Some(1));
    }

    #[test]
    fn agrees_with_every_pair_compared_on_generated_lists() {
        // Small alphabets make many overlaps; a fixed generator keeps the test repeatable.
        let parts = ["a", "b", "a-b", "ab", "a.b"];
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let len = 1 + next(12) as usize;
            let list: Vec<(String, String)> = (0..len)
                .map(|_| {
                    let depth = 1 + next(3);
                    let path: String = (0..depth)
                        .map(|_| format!("/{}", parts[next(parts.len() as u64) as usize]))
                        .collect();
                    (["h", "g"][next(2) as usize].to_string(), path)
                })
                .collect();
            let list: Vec<(&str, &str)> =
                list.iter().map(|(h, p)| (h.as_str(), p.as_str())).collect();
            assert_eq!(overlaps(&list), quadratic(&list), "{list:?}");
        }
    }
}
