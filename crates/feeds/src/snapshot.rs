//! Collecting the vulnerabilities of one snapshot and sealing them into a [`Snapshot`].
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use tocsin_model::limits::{Limit, Limits};
use tocsin_model::vuln::{Addressed, Vulnerability};

use crate::error::FeedError;
use crate::{claircore, osv, Progress};

/// One feed snapshot: the whole content of an updater at one moment, ready to be imported as an
/// update operation.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The updater the records were read for.
    pub updater: String,
    /// Hex SHA-256 over the sorted vulnerability ids (one per line): identical content gives an
    /// identical fingerprint, whatever the archive's order, mtimes or file names.
    pub fingerprint: String,
    /// The vulnerabilities with their ids, sorted by id, without duplicates, with unique
    /// identities.
    pub vulnerabilities: Vec<Addressed>,
    /// What was read and what was left out.
    pub stats: SnapshotStats,
}

/// Counts of what reading a snapshot saw, for logs and progress summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Record files read (`.json`/`.yaml`/`.yml`), or 1 for a single document.
    pub files: u64,
    /// Files inside a directory or archive that were skipped (other extensions, hidden paths).
    pub ignored_files: u64,
    /// Records read: OSV records (withdrawn ones included) or claircore array elements.
    pub records: u64,
    /// OSV records skipped because they are withdrawn.
    pub withdrawn: u64,
    /// OSV records with no affected entry that names a package.
    pub no_affected: u64,
    /// OSV affected entries without a package (git-only entries), skipped.
    pub affected_without_package: u64,
    /// OSV affected entries merged into an earlier entry of the same record naming the same
    /// package.
    pub merged_affected: u64,
    /// Identical vulnerabilities produced more than once (e.g. the same record in two files),
    /// stored once.
    pub duplicates: u64,
    /// Vulnerabilities dropped because another one with the same identity (updater, advisory,
    /// package) and different content was in the snapshot; the one with the smallest id is kept.
    pub identity_collisions: u64,
    /// CVSS vectors that could not be scored and were passed over.
    pub invalid_cvss: u64,
}

impl fmt::Display for SnapshotStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files ({} ignored), {} records, {} withdrawn, {} without usable affected packages, \
             {} package-less affected entries, {} merged affected entries, {} duplicates, \
             {} identity collisions, {} unscorable CVSS vectors",
            self.files,
            self.ignored_files,
            self.records,
            self.withdrawn,
            self.no_affected,
            self.affected_without_package,
            self.merged_affected,
            self.duplicates,
            self.identity_collisions,
            self.invalid_cvss
        )
    }
}

/// Gathers vulnerabilities file by file; nothing leaves it before [`Collector::finish`], which is
/// what makes reading all-or-nothing.
pub(crate) struct Collector<'a> {
    updater: &'a str,
    limits: Limits,
    progress: &'a dyn Fn(Progress),
    total: Option<u64>,
    done: u64,
    stats: SnapshotStats,
    vulns: Vec<Vulnerability>,
}

fn is_yaml(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// Whether a path inside a directory or archive holds a record: `.json`, `.yaml` or `.yml`, and no
/// hidden component (a checkout's `.github/*.yml` is not an advisory) and no macOS resource fork.
pub(crate) fn is_record_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let wanted = lower.ends_with(".json") || is_yaml(&lower);
    let hidden = name
        .split(['/', '\\'])
        .any(|c| (c.starts_with('.') && c != "." && c != "..") || c == "__MACOSX");
    wanted && !hidden
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// The first non-whitespace byte of a JSON document.
pub(crate) fn first_json_byte(bytes: &[u8]) -> Option<u8> {
    strip_bom(bytes)
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

fn path_text(path: &serde_path_to_error::Path) -> String {
    if path.iter().next().is_none() {
        String::new()
    } else {
        path.to_string()
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, FeedError> {
    let mut de = serde_json::Deserializer::from_slice(strip_bom(bytes));
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| FeedError::record(file, path_text(e.path()), e.inner().to_string()))?;
    de.end()
        .map_err(|e| FeedError::record(file, "", e.to_string()))?;
    Ok(value)
}

/// What one YAML node costs in [`yaml_expansion_within`]: about the size of a small value held
/// in memory (a `String` is 24 bytes, a `serde_json::Value` 32), so that a million aliases of an
/// empty anchor are as bounded as one of a long one.
const YAML_NODE_COST: u64 = 32;

/// Walks a YAML document the way deserialisation sees it, aliases expanded, keeping nothing, and
/// fails once the expansion passes its budget. YAML's anchors and aliases are a compression
/// scheme: `versions: [*a, *a, …]` repeats a megabyte-long anchor a million times from a
/// few megabytes of text (serde_yaml_ng only caps alias jumps at 100 per event, not their size).
#[derive(Clone, Copy)]
struct Expansion<'a> {
    left: &'a Cell<u64>,
    exceeded: &'a Cell<bool>,
}

impl Expansion<'_> {
    fn charge<E: de::Error>(self, bytes: u64) -> Result<(), E> {
        let cost = bytes.saturating_add(YAML_NODE_COST);
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("expansion budget exhausted"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Expansion<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Expansion<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.charge(v.len() as u64)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.charge(v.len() as u64)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.charge(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.charge(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!Tag value`): the tag, then the value.
        self.charge(0)?;
        let ((), variant) = data.variant_seed(self)?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

/// Whether a YAML document's expansion (its scalars' bytes plus [`YAML_NODE_COST`] per node,
/// aliases expanded) stays within `budget`. Syntax errors count as within: the real parse
/// reports them, with their path.
fn yaml_expansion_within(bytes: &[u8], budget: u64) -> bool {
    let left = Cell::new(budget);
    let exceeded = Cell::new(false);
    let seed = Expansion {
        left: &left,
        exceeded: &exceeded,
    };
    let _ = seed.deserialize(serde_yaml_ng::Deserializer::from_slice(bytes));
    !exceeded.get()
}

/// Most flow-collection openers (`[`, `{`) in one YAML record. libyaml's scanner does work
/// proportional to the flow nesting depth for every token, so 100,000 nested `[` (200 KB) took
/// 64 s; the openers counted anywhere (in strings too) bound that depth soundly. The real
/// records have at most 8.
const MAX_YAML_FLOW_OPENERS: usize = 256;

/// Parses one YAML record, after the bounds YAML needs beyond the member bound: its size
/// (`max_yaml_bytes`: the parser holds it as events about a hundred times larger), its flow
/// openers ([`MAX_YAML_FLOW_OPENERS`]) and its alias expansion (`max_member_bytes`).
fn parse_yaml<T: DeserializeOwned>(
    file: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<T, FeedError> {
    if bytes.len() as u64 > limits.max_yaml_bytes {
        return Err(FeedError::limit(file, Limit::YamlBytes.exceeded(limits)));
    }
    let openers = bytes.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if openers > MAX_YAML_FLOW_OPENERS {
        return Err(FeedError::record(
            file,
            "",
            format!(
                "more than {MAX_YAML_FLOW_OPENERS} flow collection openers ([ or {{); refused \
                 because the YAML scanner slows down quadratically with flow nesting"
            ),
        ));
    }
    if !yaml_expansion_within(strip_bom(bytes), limits.max_member_bytes) {
        return Err(FeedError::limit(file, Limit::MemberBytes.exceeded(limits)));
    }
    let de = serde_yaml_ng::Deserializer::from_slice(strip_bom(bytes));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_text(e.path());
        let message = e.inner().to_string();
        // The YAML error already starts with the path; say it once.
        let message = message
            .strip_prefix(&format!("{path}: "))
            .map(str::to_string)
            .unwrap_or(message);
        FeedError::record(file, path, message)
    })
}

impl<'a> Collector<'a> {
    pub(crate) fn new(
        updater: &'a str,
        total: Option<u64>,
        progress: &'a dyn Fn(Progress),
    ) -> Self {
        progress(Progress { done: 0, total });
        Collector {
            updater,
            limits: Limits::default(),
            progress,
            total,
            done: 0,
            stats: SnapshotStats::default(),
            vulns: Vec::new(),
        }
    }

    /// Bounds what records may expand to (YAML aliases) by `limits`.
    pub(crate) fn with_limits(mut self, limits: &Limits) -> Self {
        self.limits = *limits;
        self
    }

    fn tick(&mut self) {
        self.done += 1;
        (self.progress)(Progress {
            done: self.done,
            total: self.total,
        });
    }

    pub(crate) fn ignore_file(&mut self) {
        self.stats.ignored_files += 1;
    }

    /// One OSV document: a YAML record (by extension), or a JSON record or array of records.
    pub(crate) fn add_osv_document(&mut self, file: &str, bytes: &[u8]) -> Result<(), FeedError> {
        self.stats.files += 1;
        if is_yaml(file) {
            let record: osv::OsvRecord = parse_yaml(file, bytes, &self.limits)?;
            osv::convert(
                self.updater,
                file,
                "",
                &record,
                &mut self.stats,
                &mut self.vulns,
            )?;
        } else {
            match first_json_byte(bytes) {
                Some(b'[') => {
                    let records: Vec<osv::OsvRecord> = parse_json(file, bytes)?;
                    for (i, record) in records.iter().enumerate() {
                        let at = format!("[{i}].");
                        osv::convert(
                            self.updater,
                            file,
                            &at,
                            record,
                            &mut self.stats,
                            &mut self.vulns,
                        )?;
                    }
                }
                Some(b'{') => {
                    let record: osv::OsvRecord = parse_json(file, bytes)?;
                    osv::convert(
                        self.updater,
                        file,
                        "",
                        &record,
                        &mut self.stats,
                        &mut self.vulns,
                    )?;
                }
                Some(_) => {
                    return Err(FeedError::record(
                        file,
                        "",
                        "expected a JSON object (one OSV record) or array of records",
                    ))
                }
                None => return Err(FeedError::record(file, "", "the file is empty")),
            }
        }
        self.tick();
        Ok(())
    }

    /// A JSON array of claircore Vulnerabilities.
    pub(crate) fn add_claircore_array(
        &mut self,
        file: &str,
        bytes: &[u8],
    ) -> Result<(), FeedError> {
        self.stats.files += 1;
        let elements: Vec<tocsin_model::claircore::Vulnerability> = parse_json(file, bytes)?;
        self.vulns.reserve(elements.len());
        for (index, element) in elements.into_iter().enumerate() {
            self.stats.records += 1;
            self.vulns
                .push(claircore::convert(self.updater, file, index, element)?);
        }
        self.tick();
        Ok(())
    }

    /// Seals the snapshot: deduplicates, resolves identity collisions, sorts and fingerprints.
    pub(crate) fn finish(self, source: &str) -> Result<Snapshot, FeedError> {
        let Collector {
            updater,
            stats,
            vulns,
            ..
        } = self;
        if stats.records == 0 {
            return Err(FeedError::Empty {
                file: source.to_string(),
            });
        }
        let records: Vec<Addressed> = vulns.into_iter().map(Addressed::new).collect();
        Ok(Snapshot::seal(updater, records, stats))
    }
}

impl Snapshot {
    /// Seals records already addressed into a snapshot, exactly as reading a whole archive
    /// does: duplicates dropped, identity collisions resolved to the smallest id, sorted and
    /// fingerprinted. An incremental update builds its next snapshot this way from the previous
    /// one's records plus the re-read advisories, and gets the fingerprint a full read of the
    /// same content gives, because every record depends on its advisory alone.
    pub fn from_records(updater: &str, records: Vec<Addressed>) -> Snapshot {
        let stats = SnapshotStats {
            records: records.len() as u64,
            ..SnapshotStats::default()
        };
        Snapshot::seal(updater, records, stats)
    }

    fn seal(updater: &str, records: Vec<Addressed>, mut stats: SnapshotStats) -> Snapshot {
        // Records are large: sort their positions, then move each record once.
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|&a, &b| records[a].id().cmp(records[b].id()));
        let before = order.len();
        order.dedup_by(|a, b| records[*a].id() == records[*b].id());
        stats.duplicates = (before - order.len()) as u64;
        let mut records: Vec<Option<Addressed>> = records.into_iter().map(Some).collect();
        let with_ids = order.into_iter().filter_map(|i| records[i].take());

        // Walking in id order makes the kept record of a collision the smallest id: a choice that
        // does not depend on file order, so the same content always yields the same snapshot.
        let kept = before - stats.duplicates as usize;
        let mut seen = HashSet::with_capacity(kept);
        let mut vulnerabilities = Vec::with_capacity(kept);
        let mut ids = String::with_capacity(kept * 65);
        for v in with_ids {
            if !seen.insert(v.identity()) {
                stats.identity_collisions += 1;
                tracing::debug!(
                    updater,
                    name = %v.name,
                    ecosystem = %v.package.ecosystem,
                    package = %v.package.name,
                    "dropping a second record with the same identity"
                );
                continue;
            }
            ids.push_str(&v.id().0);
            ids.push('\n');
            vulnerabilities.push(v);
        }
        let fingerprint = tocsin_model::sha256_hex(ids.as_bytes());
        if stats.identity_collisions > 0 {
            tracing::warn!(
                updater,
                collisions = stats.identity_collisions,
                "snapshot holds several different records for one advisory and package; kept one of each"
            );
        }
        tracing::info!(
            updater,
            vulnerabilities = vulnerabilities.len(),
            fingerprint = %fingerprint,
            stats = %stats,
            "feed snapshot read"
        );
        Snapshot {
            updater: updater.to_string(),
            fingerprint,
            vulnerabilities,
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_progress(_: Progress) {}

    #[test]
    fn record_file_names() {
        assert!(is_record_file("crates/RUSTSEC-2020-0001.json"));
        assert!(is_record_file("./vulns/x/PYSEC-1.YAML"));
        assert!(is_record_file("a.yml"));
        assert!(!is_record_file("README.md"));
        assert!(!is_record_file(".github/workflows/ci.yml"));
        assert!(!is_record_file("x/.id-allocator"));
        assert!(!is_record_file("__MACOSX/crates/._a.json"));
        assert!(!is_record_file("crates/._a.json"));
    }

    #[test]
    fn json_errors_carry_the_path_and_position() {
        let r: Result<osv::OsvRecord, _> = parse_json(
            "crates/RUSTSEC-2020-0001.json",
            br#"{"id": "X", "affected": [{"package": {"name": "a", "ecosystem": "crates.io"},
                "ranges": [{"type": "SEMVER", "events": []}, {"type": "FOO", "events": []}]}]}"#,
        );
        let msg = r
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with(
                "crates/RUSTSEC-2020-0001.json: affected[0].ranges[1].type: unknown variant `FOO`"
            ),
            "{msg}"
        );
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let r: Result<osv::OsvRecord, _> = parse_json("a.json", br#"{"id": "X"} {"#);
        assert!(r.is_err());
    }

    #[test]
    fn yaml_keeps_scalars_as_written() {
        let mut c = Collector::new("u", None, &no_progress);
        let doc = b"id: PYSEC-1\npublished: 2020-08-05T14:15:00Z\naffected:\n- package:\n    ecosystem: PyPI\n    name: Foo_Bar\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: 0\n    - fixed: 1.10\n  versions:\n  - 0.10\n  - 1.0\n";
        if let Err(e) = c.add_osv_document("foo/PYSEC-1.yaml", doc) {
            panic!("{e}");
        }
        let s = match c.finish("t") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let v = &s.vulnerabilities[0];
        assert_eq!(v.package.name, "foo-bar");
        assert_eq!(v.fixed_in_version, "1.10");
        assert_eq!(v.issued, "2020-08-05T14:15:00Z");
        match &v.affected {
            tocsin_model::vuln::Affected::Osv { versions, .. } => {
                assert_eq!(versions, &["0.10", "1.0"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn yaml_errors_carry_the_path_and_line() {
        let mut c = Collector::new("u", None, &no_progress);
        let doc = b"id: X\naffected:\n- package:\n    ecosystem: PyPI\n    name: a\n  ranges:\n  - type: NOPE\n    events: []\n";
        let msg = c
            .add_osv_document("a/X.yaml", doc)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with("a/X.yaml: affected[0].ranges[0].type: unknown variant `NOPE`"),
            "{msg}"
        );
        assert!(msg.contains("line 7"), "{msg}");
    }

    fn osv(id: &str, package: &str, fixed: &str) -> String {
        format!(
            r#"{{"id": "{id}", "affected": [{{"package": {{"name": "{package}", "ecosystem": "Go"}},
            "ranges": [{{"type": "SEMVER", "events": [{{"introduced": "0"}}, {{"fixed": "{fixed}"}}]}}]}}]}}"#
        )
    }

    #[test]
    fn duplicates_and_collisions_are_resolved_independently_of_order() {
        let docs = [
            osv("A", "x", "1.0.0"),
            osv("A", "x", "1.0.0"),
            osv("A", "x", "2.0.0"),
            osv("B", "x", "1.0.0"),
        ];
        let mut fingerprints = Vec::new();
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut c = Collector::new("u", Some(4), &no_progress);
            for i in order {
                if let Err(e) = c.add_osv_document(&format!("{i}.json"), docs[i].as_bytes()) {
                    panic!("{e}");
                }
            }
            let s = match c.finish("t") {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(s.vulnerabilities.len(), 2);
            assert_eq!((s.stats.duplicates, s.stats.identity_collisions), (1, 1));
            let ids: Vec<_> = s.vulnerabilities.iter().map(|v| v.id()).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, sorted);
            fingerprints.push(s.fingerprint);
        }
        assert!(fingerprints.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn empty_input_is_refused_but_all_withdrawn_is_not() {
        let c = Collector::new("u", None, &no_progress);
        assert!(matches!(c.finish("dir"), Err(FeedError::Empty { .. })));
        let mut c = Collector::new("u", None, &no_progress);
        let doc = br#"{"id": "A", "withdrawn": "2024-01-01T00:00:00Z"}"#;
        if let Err(e) = c.add_osv_document("a.json", doc) {
            panic!("{e}");
        }
        match c.finish("dir") {
            Ok(s) => assert!(s.vulnerabilities.is_empty() && s.stats.withdrawn == 1),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn progress_is_reported_per_file() {
        let seen = std::cell::RefCell::new(Vec::new());
        let record = |p: Progress| seen.borrow_mut().push((p.done, p.total));
        let mut c = Collector::new("u", Some(2), &record);
        for i in 0..2 {
            if let Err(e) = c.add_osv_document("a.json", osv(&format!("A{i}"), "x", "1").as_bytes())
            {
                panic!("{e}");
            }
        }
        assert_eq!(*seen.borrow(), [(0, Some(2)), (1, Some(2)), (2, Some(2))]);
    }
}
