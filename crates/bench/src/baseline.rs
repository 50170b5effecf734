//! The baseline: affected manifests computed the way Clair's indexer does it — one SQL query
//! per vulnerability against a normalized package table in PostgreSQL, version checks in the
//! application — on the same fleet and the same advisories, so the speed-up is measured side by
//! side.
//!
//! The schema is Clair's shape reduced to what the question needs: `package` holds each distinct
//! (ecosystem, name, name slot, version, normalized version, arch) once, `manifest_package` links
//! manifests to packages (Clair's `package_scanartifact`/`manifest_index`), with b-tree indexes
//! on the package name and on the link's package id. A package appears once per name it can be
//! matched by — its binary name, and for OS packages its source name — exactly as tocsin's index
//! keys it, so both sides answer the same question and their answers are compared.
//!
//! The per-vulnerability query is the strongest single query for it: it returns one row per
//! distinct installed version of the name, with the manifests as an aggregated array, so the
//! version rule is evaluated once per version (as tocsin does), not once per manifest.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::SinkExt as _;
use roaring::RoaringBitmap;
use tocsin_index::{package_keys, vuln_slots, NameSlot};
use tocsin_model::inventory::InstalledPackage;
use tocsin_model::vuln::Vulnerability;
use tocsin_versions::CompiledRule;
use tokio_postgres::{Client, NoTls, Statement};

/// A throw-away database holding the fleet's packages.
pub struct Baseline {
    admin: Client,
    client: Client,
    database: String,
    ecosystems: Vec<String>,
}

/// What loading the fleet cost.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadStats {
    /// Manifests loaded.
    pub manifests: u64,
    /// Distinct package rows.
    pub packages: u64,
    /// Manifest–package links.
    pub links: u64,
    /// Seconds to COPY everything and build the indexes.
    pub seconds: f64,
}

fn slot_code(s: NameSlot) -> &'static str {
    match s {
        NameSlot::Binary => "b",
        NameSlot::Source => "s",
    }
}

async fn connect(connstring: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(connstring, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL ({connstring})"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("baseline: PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// The connection string with `dbname` replaced.
fn with_database(connstring: &str, db: &str) -> String {
    let kept: Vec<&str> = connstring
        .split_whitespace()
        .filter(|kv| !kv.starts_with("dbname="))
        .collect();
    format!("{} dbname={db}", kept.join(" "))
}

impl Baseline {
    /// Creates a fresh database on the server `connstring` names (key=value form).
    pub async fn create(connstring: &str) -> Result<Baseline> {
        let admin = connect(connstring).await?;
        let database = format!("tocsin_bench_{}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
            .await
            .context("dropping an old baseline database")?;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .context("creating the baseline database")?;
        let client = connect(&with_database(connstring, &database)).await?;
        client
            .batch_execute(
                "CREATE UNLOGGED TABLE package (
                     id         BIGINT PRIMARY KEY,
                     ecosystem  TEXT NOT NULL,
                     name       TEXT NOT NULL,
                     slot       TEXT NOT NULL,
                     version    TEXT NOT NULL,
                     normalized TEXT NOT NULL,
                     arch       TEXT NOT NULL
                 );
                 CREATE UNLOGGED TABLE manifest_package (
                     manifest_id BIGINT NOT NULL,
                     package_id  BIGINT NOT NULL
                 );",
            )
            .await
            .context("creating the baseline schema")?;
        Ok(Baseline {
            admin,
            client,
            database,
            ecosystems: Vec::new(),
        })
    }

    /// Loads manifests `0..n` (`packages(i)` gives manifest `i`'s packages) with COPY, then
    /// builds the indexes and statistics a real deployment would have.
    pub async fn load(
        &mut self,
        n: u64,
        packages: impl Fn(u64) -> Vec<InstalledPackage>,
    ) -> Result<LoadStats> {
        let started = Instant::now();
        let mut ids: HashMap<(String, String, NameSlot, String, String, String), i64> =
            HashMap::new();
        let links = self
            .client
            .copy_in("COPY manifest_package (manifest_id, package_id) FROM STDIN")
            .await
            .context("starting COPY manifest_package")?;
        futures::pin_mut!(links);
        let mut buf = String::new();
        let mut n_links = 0u64;
        let mut ecosystems = std::collections::BTreeSet::new();
        for i in 0..n {
            for p in packages(i) {
                ecosystems.insert(p.ecosystem.clone());
                for key in package_keys(&p) {
                    let k = (
                        key.ecosystem,
                        key.name,
                        key.slot,
                        p.version.clone(),
                        p.normalized_version.clone(),
                        p.arch.clone(),
                    );
                    let next = ids.len() as i64 + 1;
                    let id = *ids.entry(k).or_insert(next);
                    buf.push_str(&format!("{i}\t{id}\n"));
                    n_links += 1;
                }
            }
            if buf.len() > 1 << 20 {
                links
                    .send(bytes::Bytes::from(std::mem::take(&mut buf)))
                    .await
                    .context("COPY manifest_package")?;
            }
        }
        links
            .send(bytes::Bytes::from(buf))
            .await
            .context("COPY manifest_package")?;
        links
            .finish()
            .await
            .context("finishing COPY manifest_package")?;

        let rows = self
            .client
            .copy_in(
                "COPY package (id, ecosystem, name, slot, version, normalized, arch) FROM STDIN",
            )
            .await
            .context("starting COPY package")?;
        futures::pin_mut!(rows);
        let mut buf = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n")
        };
        for ((eco, name, slot, version, normalized, arch), id) in &ids {
            buf.push_str(&format!(
                "{id}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                esc(eco),
                esc(name),
                slot_code(*slot),
                esc(version),
                esc(normalized),
                esc(arch)
            ));
        }
        rows.send(bytes::Bytes::from(buf))
            .await
            .context("COPY package")?;
        rows.finish().await.context("finishing COPY package")?;
        self.client
            .batch_execute(
                "CREATE INDEX package_name ON package (name, ecosystem, slot);
                 CREATE INDEX manifest_package_package ON manifest_package (package_id);
                 ANALYZE package; ANALYZE manifest_package;",
            )
            .await
            .context("indexing the baseline tables")?;
        self.ecosystems = ecosystems.into_iter().collect();
        Ok(LoadStats {
            manifests: n,
            packages: ids.len() as u64,
            links: n_links,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The manifests `v` affects: one query, then the version rule per distinct version.
    pub async fn affected(&self, st: &Statement, v: &Vulnerability) -> Result<RoaringBitmap> {
        let rule = CompiledRule::new(&v.affected, &v.package.ecosystem);
        let ecosystems: Vec<&str> = self
            .ecosystems
            .iter()
            .map(String::as_str)
            .filter(|e| tocsin_model::ecosystem::applies(&v.package.ecosystem, e))
            .collect();
        let mut out = RoaringBitmap::new();
        if ecosystems.is_empty() {
            return Ok(out);
        }
        let slots: Vec<&str> = vuln_slots(v.package.kind)
            .iter()
            .map(|s| slot_code(*s))
            .collect();
        let rows = self
            .client
            .query(st, &[&v.package.name, &ecosystems, &slots])
            .await
            .with_context(|| format!("baseline query for {}", v.name))?;
        for r in rows {
            let (version, normalized, arch): (&str, &str, &str) = (r.get(0), r.get(1), r.get(2));
            if rule.matches(version, normalized, arch) {
                let ids: Vec<i64> = r.get(3);
                out.extend(ids.into_iter().filter_map(|i| u32::try_from(i).ok()));
            }
        }
        Ok(out)
    }

    /// Times [`affected`](Self::affected) over `vulns`; returns the total and each result.
    pub async fn time_all(
        &self,
        vulns: &[&Vulnerability],
    ) -> Result<(Duration, Vec<RoaringBitmap>)> {
        let st = self
            .client
            .prepare(
                "SELECT p.version, p.normalized, p.arch, array_agg(mp.manifest_id)
                 FROM package p JOIN manifest_package mp ON mp.package_id = p.id
                 WHERE p.name = $1 AND p.ecosystem = ANY($2) AND p.slot = ANY($3)
                 GROUP BY p.id",
            )
            .await
            .context("preparing the baseline query")?;
        let started = Instant::now();
        let mut out = Vec::with_capacity(vulns.len());
        for v in vulns {
            out.push(self.affected(&st, v).await?);
        }
        Ok((started.elapsed(), out))
    }

    /// Drops the database.
    pub async fn drop_database(self) -> Result<()> {
        drop(self.client);
        // The connection task ends with the client; give the server a moment to notice.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await
            .context("dropping the baseline database")
    }
}
