//! Round trips and bad inputs, on synthetic images built in memory.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::export::seal;
use crate::tarfmt::BundleWriter;
use crate::*;

// ---------- synthetic images ----------

fn layer_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Compressible but not trivial bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            if i % 7 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            (x >> (i % 7 * 8)) as u8 % 16 + b'a'
        })
        .collect()
}

struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    diff_ids: Vec<String>,
}

impl Image {
    fn new(layers: Vec<Vec<u8>>) -> Image {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        Image {
            config,
            layers,
            diff_ids,
        }
    }
    fn small() -> Image {
        Image::new(vec![
            layer_tar(&[("etc/os-release", b"ID=test\n".to_vec())]),
            layer_tar(&[("usr/bin/tool", noise(20_000, 1))]),
            layer_tar(&[("workspace/a.py", b"print(1)\n".to_vec())]),
        ])
    }
    fn id(&self) -> String {
        sha256_digest(&self.config)
    }
}

fn hexof(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
}

/// Engine ≤ 24: `<v1id>/layer.tar` …, members in name order (manifest.json near the end).
fn docker_archive_save(img: &Image) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut paths = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let v1 = hexof(&sha256_digest(format!("v1-{i}").as_bytes())).to_string();
        files.push((format!("{v1}/VERSION"), b"1.0".to_vec()));
        files.push((format!("{v1}/json"), b"{}".to_vec()));
        files.push((format!("{v1}/layer.tar"), l.clone()));
        paths.push(format!("{v1}/layer.tar"));
    }
    let cfg = format!("{}.json", hexof(&img.id()));
    files.push((cfg.clone(), img.config.clone()));
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&json!([{"Config": cfg, "RepoTags": ["test/img:1"], "Layers": paths}]))
            .unwrap(),
    ));
    files.push(("repositories".into(), b"{}".to_vec()));
    files.sort();
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in &files {
        add(&mut b, n, d);
    }
    b.into_inner().unwrap()
}

/// Engine ≥ 25: OCI layout plus the legacy manifest.json; `gzip_layer` stores that layer's blob
/// gzip-compressed (as the containerd store may).
fn oci_save(img: &Image, gzip_layer: Option<usize>) -> Vec<u8> {
    oci_save_with(img, gzip_layer, true)
}

fn oci_save_with(img: &Image, gzip_layer: Option<usize>, legacy: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut descs = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let data = if gzip_layer == Some(i) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(l).unwrap();
            e.finish().unwrap()
        } else {
            l.clone()
        };
        let d = sha256_digest(&data);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": data.len()}));
        blobs.push((d, data));
    }
    blobs.push((img.id(), img.config.clone()));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": img.id(), "size": img.config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = sha256_digest(&manifest);
    blobs.push((md.clone(), manifest.clone()));
    blobs.sort();
    let mut legacy_layers = Vec::new();
    for (d, data) in &blobs {
        add(&mut b, &format!("blobs/sha256/{}", hexof(d)), data);
    }
    for (i, _) in img.layers.iter().enumerate() {
        let layer_blob = if gzip_layer == Some(i) {
            None
        } else {
            Some(img.diff_ids[i].clone())
        };
        if let Some(d) = layer_blob {
            legacy_layers.push(format!("blobs/sha256/{}", hexof(&d)));
        }
    }
    // An Engine-25-style symlink, to be skipped.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(
        &mut h,
        "abc/layer.tar",
        format!("../blobs/sha256/{}", hexof(&img.diff_ids[0])),
    )
    .unwrap();
    add(
        &mut b,
        "index.json",
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": "docker.io/test/img:1"}}]}))
        .unwrap(),
    );
    if legacy {
        add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&json!([{"Config": format!("blobs/sha256/{}", hexof(&img.id())), "RepoTags": ["test/img:1"], "Layers": legacy_layers}]))
            .unwrap(),
    );
    }
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    b.into_inner().unwrap()
}

fn opts(kind: Kind) -> ExportOptions {
    ExportOptions {
        kind,
        reference: "test/img:1".into(),
        recipe_files: vec![
            ("dlenv.toml".into(), b"[env]\nname = \"x\"\n".to_vec()),
            ("context/src/train.py".into(), b"import jax\n".to_vec()),
        ],
        host: json!({"driver": "570.1"}),
        stack: Some(json!({"framework": "jax"})),
        level: 3,
        threads: 2,
        dlenv_version: "0.1.0".into(),
        ..ExportOptions::default()
    }
}

fn export_to(dir: &Path, name: &str, save: &[u8], o: &ExportOptions) -> (PathBuf, Manifest) {
    let path = dir.join(name);
    // Read and write, like the caller's temporary file (a duplicated layer is read back).
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut last = 0;
    let m = export(save, &mut f, o, &mut |n| last = n).unwrap();
    assert_eq!(last, save.len() as u64, "progress reports every byte read");
    (path, m)
}

/// Members of a tar, as the tar crate (an independent reader) sees them.
fn members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

/// Loads a docker archive the way the classic loader reads it: manifest.json → config →
/// layer paths; returns (config, layer path → content, Layers list, RepoTags).
type Loaded = (Vec<u8>, Vec<(String, Vec<u8>)>, Vec<String>, Vec<String>);

fn read_docker_archive(bytes: &[u8]) -> Loaded {
    let ms = members(bytes);
    assert_eq!(
        ms.last().unwrap().0,
        "manifest.json",
        "manifest.json is last"
    );
    let man: serde_json::Value = serde_json::from_slice(&ms.last().unwrap().1).unwrap();
    let cfg_name = man[0]["Config"].as_str().unwrap();
    let config = ms.iter().find(|(n, _)| n == cfg_name).unwrap().1.clone();
    let layers: Vec<String> = man[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let tags = man[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let files = ms
        .into_iter()
        .filter(|(n, _)| n.ends_with("layer.tar"))
        .collect();
    (config, files, layers, tags)
}

fn check_full_round_trip(save: &[u8], img: &Image) {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = export_to(dir.path(), "b.dlenv", save, &opts(Kind::Full));
    let v = verify(&path).unwrap();
    assert_eq!(v, m);
    assert_eq!(detect(&path).unwrap(), Input::Bundle);
    assert_eq!(m.kind, Kind::Full);
    let image = m.image.as_ref().unwrap();
    assert_eq!(image.id, img.id());
    assert_eq!(image.repo_tags.len(), 1);
    assert!(image.repo_tags[0].ends_with("test/img:1"));
    let ids: Vec<&str> = m.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(
        ids,
        img.diff_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(m.layers.iter().all(|l| l.member.is_some()));
    assert_eq!(m.recipe_files, vec!["context/src/train.py", "dlenv.toml"]);
    // An independent tar reader sees the documented layout, manifest last.
    let bytes = std::fs::read(&path).unwrap();
    let names: Vec<String> = members(&bytes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], MARKER_MEMBER);
    assert_eq!(names.last().unwrap(), "manifest.json");
    assert!(names.contains(&"config.json".to_string()));
    assert!(names.contains(&"recipe/dlenv.toml".to_string()));
    if let Ok(out) = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&path)
        .output()
    {
        assert!(
            out.status.success(),
            "tar -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            names.len()
        );
    }
    // Docker archive for `docker load`.
    let mut out = Vec::new();
    write_docker_archive(&path, &v, &mut out).unwrap();
    let (config, files, layers, tags) = read_docker_archive(&out);
    assert_eq!(config, img.config);
    assert_eq!(layers.len(), img.layers.len());
    assert_eq!(tags, image.repo_tags);
    for (p, want) in layers.iter().zip(&img.layers) {
        let got = &files
            .iter()
            .find(|(n, _)| n == p)
            .expect("layer included")
            .1;
        assert_eq!(got, want);
    }
}

#[test]
fn full_round_trip_docker_archive() {
    let img = Image::small();
    check_full_round_trip(&docker_archive_save(&img), &img);
}

#[test]
fn full_round_trip_oci_with_big_gzip_and_duplicate_layers() {
    let big = layer_tar(&[("models/w.bin", noise(9 << 20, 7))]); // > 8 MiB: streamed path
    let small = layer_tar(&[("a", b"a".to_vec())]);
    let img = Image::new(vec![
        small.clone(),
        big,
        layer_tar(&[("b", noise(5000, 3))]),
        small, // the same content twice in rootfs.diff_ids
    ]);
    check_full_round_trip(&oci_save(&img, Some(2)), &img);
}

#[test]
fn full_round_trip_docker_archive_with_a_layer_twice() {
    // Engines write a repeated layer once (later ones are symlinks); one that writes it twice
    // gets the second copy removed from the bundle (it is found only at the end, from the
    // layer list, so what follows it in the file is moved down).
    let a = layer_tar(&[("a", noise(70_000, 9))]);
    let img = Image::new(vec![
        a.clone(),
        layer_tar(&[("b", noise(50_000, 4))]),
        a.clone(),
        layer_tar(&[("c", noise(30_000, 6))]),
        a,
    ]);
    check_full_round_trip(&docker_archive_save(&img), &img);
}

#[test]
fn export_trusts_the_layer_list_and_import_checks_it() {
    // A save stream whose manifest lists two layers the wrong way round: a full export names
    // the layers by their position (it does not hash them), so the import's stream finds out.
    let img = Image::small();
    let save = docker_archive_save(&img);
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in members(&save) {
        if n == "manifest.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&d).unwrap();
            v[0]["Layers"].as_array_mut().unwrap().swap(0, 1);
            add(&mut b, &n, &serde_json::to_vec(&v).unwrap());
        } else {
            add(&mut b, &n, &d);
        }
    }
    let swapped = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = export_to(dir.path(), "s.dlenv", &swapped, &opts(Kind::Full));
    let v = verify(&path).unwrap();
    assert_eq!(v, m);
    let mut out = Vec::new();
    let e = write_docker_archive(&path, &v, &mut out).unwrap_err();
    assert!(
        matches!(
            e,
            BundleError::DiffIdMismatch { .. } | BundleError::SizeMismatch { .. }
        ),
        "{e}"
    );
    assert!(unfinished(&out));
    // A delta export hashes the layers it cannot identify (it must decide at once what to
    // leave out), so the same stream gives a correct bundle.
    let mut o = opts(Kind::Delta);
    o.skip_diff_ids.insert(sha256_digest(b"not in this image"));
    let (path, _) = export_to(dir.path(), "d.dlenv", &swapped, &o);
    let v = verify(&path).unwrap();
    let ids: Vec<&String> = v.layers.iter().map(|l| &l.diff_id).collect();
    assert_eq!(ids, img.diff_ids.iter().collect::<Vec<_>>());
    let mut out = Vec::new();
    write_docker_archive(&path, &v, &mut out).unwrap();
    let (_, files, layers, _) = read_docker_archive(&out);
    for (p, want) in layers.iter().zip(&img.layers) {
        assert_eq!(&files.iter().find(|(n, _)| n == p).unwrap().1, want);
    }
}

#[test]
fn full_round_trip_oci_index_only() {
    let img = Image::small();
    check_full_round_trip(&oci_save_with(&img, None, false), &img);
}

fn check_delta(save: &[u8], img: &Image, skip: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(Kind::Delta);
    o.skip_diff_ids = skip.iter().map(|&i| img.diff_ids[i].clone()).collect();
    o.skip_diff_ids.insert(sha256_digest(b"not in this image"));
    o.base_reference = Some("base:1".into());
    o.base_id = Some(sha256_digest(b"base"));
    let (path, m) = export_to(dir.path(), "d.dlenv", save, &o);
    let v = verify(&path).unwrap();
    assert_eq!(v, m);
    let lo = m.left_out.as_ref().unwrap();
    let want: Vec<String> = skip.iter().map(|&i| img.diff_ids[i].clone()).collect();
    assert_eq!(lo.diff_ids, want);
    assert_eq!(lo.base_reference.as_deref(), Some("base:1"));
    for (i, l) in m.layers.iter().enumerate() {
        assert_eq!(l.member.is_none(), skip.contains(&i), "layer {i}");
    }
    let bytes = std::fs::read(&path).unwrap();
    let names: HashSet<String> = members(&bytes).into_iter().map(|(n, _)| n).collect();
    for &i in skip {
        assert!(!names.contains(&layer_member_name(&img.diff_ids[i])));
    }
    let mut out = Vec::new();
    write_docker_archive(&path, &v, &mut out).unwrap();
    let (_, files, layers, _) = read_docker_archive(&out);
    assert_eq!(
        layers.len(),
        img.layers.len(),
        "left-out layers are still referenced"
    );
    for (i, p) in layers.iter().enumerate() {
        let f = files.iter().find(|(n, _)| n == p);
        if skip.contains(&i) {
            assert!(f.is_none(), "left-out layer {i} is not included");
        } else {
            assert_eq!(f.unwrap().1, img.layers[i]);
        }
    }
}

#[test]
fn delta_round_trip_docker_archive() {
    let img = Image::small();
    check_delta(&docker_archive_save(&img), &img, &[0, 1]);
}

#[test]
fn delta_round_trip_oci_big_base_layer() {
    let img = Image::new(vec![
        layer_tar(&[("base/lib.so", noise(9 << 20, 11))]),
        layer_tar(&[("top", b"top".to_vec())]),
    ]);
    check_delta(&oci_save(&img, None), &img, &[0]);
}

#[test]
fn recipe_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.dlenv");
    let m = export_recipe(&mut File::create(&path).unwrap(), &opts(Kind::Recipe)).unwrap();
    assert_eq!(m.kind, Kind::Recipe);
    let v = verify(&path).unwrap();
    assert_eq!(v, m);
    assert!(v.image.is_none() && v.layers.is_empty());
    let bytes = std::fs::read(&path).unwrap();
    let ms = members(&bytes);
    let f = ms
        .iter()
        .find(|(n, _)| n == "recipe/context/src/train.py")
        .unwrap();
    assert_eq!(f.1, b"import jax\n");
    let e = write_docker_archive(&path, &v, Vec::new()).unwrap_err();
    assert!(matches!(e, BundleError::InvalidOptions { .. }), "{e}");
}

#[test]
fn bad_options_and_save_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = File::create(dir.path().join("x")).unwrap();
    let img = Image::small();
    let save = docker_archive_save(&img);
    let e = export(&save[..], &mut f, &opts(Kind::Recipe), &mut |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::InvalidOptions { .. }), "{e}");
    let mut o = opts(Kind::Full);
    o.skip_diff_ids.insert(img.diff_ids[0].clone());
    let e = export(&save[..], &mut f, &o, &mut |_| {}).unwrap_err();
    assert!(matches!(e, BundleError::InvalidOptions { .. }), "{e}");
    let mut o = opts(Kind::Full);
    o.recipe_files.push(("../escape".into(), vec![]));
    let e = export(&save[..], &mut f, &o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("`..`"), "{e}");

    // A layer the config lists but the stream lacks.
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in members(&save) {
        if !(n.ends_with("layer.tar") && d == img.layers[1]) {
            add(&mut b, &n, &d);
        }
    }
    let e = export(
        &b.into_inner().unwrap()[..],
        &mut f,
        &opts(Kind::Full),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains(&img.diff_ids[1]), "{e}");
    // Two images.
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in members(&save) {
        if n == "manifest.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&d).unwrap();
            let first = v[0].clone();
            v.as_array_mut().unwrap().push(first);
            add(&mut b, &n, &serde_json::to_vec(&v).unwrap());
        } else {
            add(&mut b, &n, &d);
        }
    }
    let e = export(
        &b.into_inner().unwrap()[..],
        &mut f,
        &opts(Kind::Full),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("2 images"), "{e}");
    // Not a save stream at all.
    let e = export(
        &layer_tar(&[("x", vec![1])])[..],
        &mut f,
        &opts(Kind::Full),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, BundleError::SaveStream { .. }), "{e}");
}

// ---------- bad bundles ----------

fn good_bundle(dir: &Path) -> (PathBuf, Vec<u8>) {
    let img = Image::small();
    let (path, _) = export_to(
        dir,
        "g.dlenv",
        &docker_archive_save(&img),
        &opts(Kind::Full),
    );
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Byte offset of a member's data in a bundle.
fn data_offset(bytes: &[u8], member: &str) -> usize {
    let mut off = 0;
    loop {
        let h = tar::Header::from_byte_slice(&bytes[off..off + 512]);
        let size = h.size().unwrap() as usize;
        if h.path_bytes().as_ref() == member.as_bytes() {
            return off + 512;
        }
        off += 512 + size.div_ceil(512) * 512;
    }
}

/// Rebuilds a bundle with `edit` applied to its (re-sealed) manifest, dropping or adding
/// members: what a careful tamperer would do.
fn rebuild(
    src: &[u8],
    dst: &Path,
    edit: impl FnOnce(&mut Manifest),
    drop: Option<&str>,
    extra: Option<(&str, &[u8])>,
) {
    let ms = members(src);
    let mut m: Manifest = serde_json::from_slice(&ms.last().unwrap().1).unwrap();
    edit(&mut m);
    let mut f = File::create(dst).unwrap();
    let mut w = BundleWriter::new(&mut f, 0);
    for (n, d) in &ms[..ms.len() - 1] {
        if Some(n.as_str()) != drop {
            w.add_bytes(n, d).unwrap();
        }
    }
    if let Some((n, d)) = extra {
        w.add_bytes(n, d).unwrap();
    }
    let bytes = seal(&mut m).unwrap();
    w.add_bytes("manifest.json", &bytes).unwrap();
    w.finish().unwrap();
}

#[test]
fn truncated_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_bundle(dir.path());
    let n = bytes.len();
    for cut in [
        0,
        100,
        511,
        512,
        513,
        1024,
        3000,
        n / 2,
        n - 2000,
        n - 1024,
        n - 600,
        n - 512,
        n - 1,
    ] {
        let p = write(dir.path(), "t.dlenv", &bytes[..cut]);
        let e = verify(&p).unwrap_err();
        assert!(
            matches!(
                e,
                BundleError::Truncated { .. } | BundleError::NotABundle { .. }
            ),
            "cut at {cut}: {e}"
        );
        assert!(e.hint().is_some());
    }
    let p = write(dir.path(), "t.dlenv", &bytes[..n / 2]);
    let e = verify(&p).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn flipped_byte_in_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes) = good_bundle(dir.path());
    let m = verify_reader(&bytes[..]).unwrap();
    let member = m.layers[1].member.clone().unwrap();
    let off = data_offset(&bytes, &member) + 40;
    bytes[off] ^= 0x20;
    let e = verify_reader(&bytes[..]).unwrap_err();
    match &e {
        BundleError::DigestMismatch {
            member: got,
            expected,
            actual,
        } => {
            assert_eq!(got, &member);
            assert_eq!(expected, m.members.get(&member).unwrap());
            assert_ne!(expected, actual);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().contains(&member));
    // The same through the file path, whose layer members are hashed on other threads.
    let p = write(dir.path(), "flipped.dlenv", &bytes);
    let e2 = verify(&p).unwrap_err();
    assert_eq!(e2.to_string(), e.to_string());
}

#[test]
fn tampered_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_bundle(dir.path());
    let m = verify_reader(&bytes[..]).unwrap();

    // Edited in place: the self-checksum catches it.
    let mut raw = bytes.clone();
    let off = data_offset(&raw, "manifest.json");
    let text = String::from_utf8_lossy(&raw[off..]).into_owned();
    let at = off + text.find("\"dlenv_version\": \"0.1.0\"").unwrap() + 18;
    raw[at] = b'9';
    // keep the tar header valid: the size is unchanged, only data changed
    let e = verify_reader(&raw[..]).unwrap_err();
    assert!(matches!(e, BundleError::ManifestChecksum { .. }), "{e}");

    // Re-sealed edits of digests are caught by the members themselves.
    let layer = m.layers[0].member.clone().unwrap();
    let p = dir.path().join("t1");
    rebuild(
        &bytes,
        &p,
        |m| {
            m.members.insert(layer.clone(), sha256_digest(b"other"));
        },
        None,
        None,
    );
    let e = verify(&p).unwrap_err();
    assert!(
        matches!(&e, BundleError::DigestMismatch { member, .. } if *member == layer),
        "{e}"
    );

    // A diff_id changed alone no longer matches the member's name (nor the config).
    let p = dir.path().join("t2");
    rebuild(
        &bytes,
        &p,
        |m| m.layers[2].diff_id = sha256_digest(b"evil"),
        None,
        None,
    );
    let e = verify(&p).unwrap_err();
    assert!(matches!(e, BundleError::Inconsistent { .. }), "{e}");
    assert!(e.to_string().contains(&sha256_digest(b"evil")), "{e}");

    // An uncompressed size is only known once the layer is decompressed: `verify` cannot see
    // the lie, the stream to the engine fails before its manifest.json.
    for delta in [1i64, -1] {
        let p = dir.path().join("t3");
        rebuild(
            &bytes,
            &p,
            |m| m.layers[1].size = m.layers[1].size.saturating_add_signed(delta),
            None,
            None,
        );
        let v = verify(&p).unwrap();
        let mut out = Vec::new();
        let e = write_docker_archive(&p, &v, &mut out).unwrap_err();
        assert!(
            matches!(&e, BundleError::SizeMismatch { what, .. } if what == "uncompressed size"),
            "{e}"
        );
        assert!(!archive_names(&out).contains(&"manifest.json".to_string()));
        assert!(unfinished(&out));
    }

    let p = dir.path().join("t4");
    rebuild(
        &bytes,
        &p,
        |m| m.image.as_mut().unwrap().id = sha256_digest(b"x"),
        None,
        None,
    );
    let e = verify(&p).unwrap_err();
    assert!(matches!(e, BundleError::ConfigMismatch { .. }), "{e}");
}

#[test]
fn unknown_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_bundle(dir.path());
    let p = dir.path().join("v2");
    rebuild(&bytes, &p, |m| m.format_version = 2, None, None);
    let e = verify(&p).unwrap_err();
    assert!(matches!(e, BundleError::UnsupportedVersion { .. }), "{e}");
    assert!(e.to_string().contains("version 2"), "{e}");
    assert!(e.hint().unwrap().contains("upgrade dlenv"));

    // The marker says so too, before any member is read.
    let mut raw = bytes.clone();
    let off = data_offset(&raw, MARKER_MEMBER);
    raw[off + 13] = b'7';
    let e = verify_reader(&raw[..]).unwrap_err();
    assert!(e.to_string().contains("version 7"), "{e}");
}

#[test]
fn missing_and_extra_members() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_bundle(dir.path());
    let m = verify_reader(&bytes[..]).unwrap();
    let layer = m.layers[1].member.clone().unwrap();
    for gone in ["recipe/dlenv.toml", "config.json", layer.as_str()] {
        let p = dir.path().join("m");
        rebuild(&bytes, &p, |_| {}, Some(gone), None);
        let e = verify(&p).unwrap_err();
        assert!(
            matches!(&e, BundleError::MissingMember { member } if member == gone),
            "{gone}: {e}"
        );
    }
    let p = dir.path().join("x");
    rebuild(&bytes, &p, |_| {}, None, Some(("recipe/extra", b"x")));
    let e = verify(&p).unwrap_err();
    assert!(
        matches!(&e, BundleError::ExtraMember { member } if member == "recipe/extra"),
        "{e}"
    );
    // No manifest at all.
    let p = dir.path().join("nm");
    let mut f = File::create(&p).unwrap();
    let mut w = BundleWriter::new(&mut f, 0);
    for (n, d) in &members(&bytes)[..3] {
        w.add_bytes(n, d).unwrap();
    }
    w.finish().unwrap();
    let e = verify(&p).unwrap_err();
    assert!(matches!(e, BundleError::ManifestMissing { .. }), "{e}");
}

/// A raw ustar entry whose name and link name are set byte for byte (bypassing the tar
/// crate's own checks, as an attacker would).
fn raw_entry(name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.as_old_mut().linkflag = [kind];
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

fn evil_entries() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("dot-dot", raw_entry(b"recipe/../../evil", b'0', b"", b"x")),
        ("absolute", raw_entry(b"/etc/cron.d/evil", b'0', b"", b"x")),
        (
            "symlink",
            raw_entry(b"recipe/s", b'2', b"../../../etc/passwd", b""),
        ),
        (
            "abs symlink",
            raw_entry(b"recipe/s", b'2', b"/etc/passwd", b""),
        ),
        (
            "hard link",
            raw_entry(b"recipe/h", b'1', b"../etc/shadow", b""),
        ),
    ]
}

#[test]
fn escaping_paths_in_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_bundle(dir.path());
    let marker_end = 1024; // marker header + one data block
    for (what, evil) in evil_entries() {
        let mut b = bytes[..marker_end].to_vec();
        b.extend_from_slice(&evil);
        b.extend_from_slice(&bytes[marker_end..]);
        let e = verify_reader(&b[..]).unwrap_err();
        let ok = match what {
            "dot-dot" | "absolute" => matches!(e, BundleError::UnsafePath { .. }),
            _ => matches!(e, BundleError::UnsafeLink { .. }),
        };
        assert!(ok, "{what}: {e}");
        assert!(e.hint().unwrap().contains("outside"), "{what}");
    }
}

fn plain_with(evil: &[u8]) -> Vec<u8> {
    let img = Image::small();
    let mut save = docker_archive_save(&img);
    save.truncate(save.len() - 1024); // drop the end marker (tar::Builder writes exactly 1024)
    save.extend_from_slice(evil);
    save.extend_from_slice(&[0; 1024]);
    save
}

#[test]
fn escaping_paths_in_a_plain_archive() {
    let img = Image::small();
    check_archive(&docker_archive_save(&img)[..]).unwrap();
    check_archive(&oci_save(&img, None)[..]).unwrap(); // relative symlink into blobs/ is fine
    for (what, evil) in evil_entries() {
        let e = check_archive(&plain_with(&evil)[..]).unwrap_err();
        let ok = match what {
            "dot-dot" | "absolute" => matches!(e, BundleError::UnsafePath { .. }),
            _ => matches!(e, BundleError::UnsafeLink { .. }),
        };
        assert!(ok, "{what}: {e}");
    }
    let e = check_archive(&plain_with(&raw_entry(b"dev/sda", b'4', b"", b""))[..]).unwrap_err();
    assert!(matches!(e, BundleError::UnsupportedEntry { .. }), "{e}");

    // open_archive refuses it before handing out a reader, compressed or not.
    let dir = tempfile::tempdir().unwrap();
    let evil = plain_with(&evil_entries()[0].1);
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    z.write_all(&evil).unwrap();
    let p = write(dir.path(), "evil.tar.zst", &z.finish().unwrap());
    assert_eq!(detect(&p).unwrap(), Input::DockerArchive(Compression::Zstd));
    assert!(matches!(
        open_archive(&p, Compression::Zstd),
        Err(BundleError::UnsafePath { .. })
    ));
}

#[test]
fn plain_archives_detect_open_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let save = oci_save(&Image::small(), None);
    for (c, name) in [
        (Compression::None, "a.tar"),
        (Compression::Gzip, "a.tar.gz"),
        (Compression::Zstd, "a.tar.zst"),
    ] {
        let p = dir.path().join(name);
        let mut last = 0;
        write_plain_archive(&save[..], File::create(&p).unwrap(), c, 3, 2, &mut |n| {
            last = n
        })
        .unwrap();
        assert_eq!(last, save.len() as u64);
        assert_eq!(detect(&p).unwrap(), Input::DockerArchive(c), "{name}");
        let mut back = Vec::new();
        open_archive(&p, c).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, save, "{name}");
    }
    let p = write(dir.path(), "junk", b"hello, this is not an archive");
    assert!(matches!(detect(&p), Err(BundleError::UnknownInput { .. })));
    let p = write(dir.path(), "empty", b"");
    assert!(matches!(detect(&p), Err(BundleError::UnknownInput { .. })));
}

#[test]
fn docker_archive_stream_rechecks_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes) = good_bundle(dir.path());
    let m = verify(&path).unwrap();
    // Changed after verify: the stream fails and never gets a manifest.json.
    let member = m.layers[1].member.clone().unwrap();
    let off = data_offset(&bytes, &member) + 100;
    bytes[off] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let mut out = Vec::new();
    let e = write_docker_archive(&path, &m, &mut out).unwrap_err();
    assert!(
        matches!(
            e,
            BundleError::DigestMismatch { .. }
                | BundleError::CorruptLayer { .. }
                | BundleError::DiffIdMismatch { .. }
        ),
        "{e}"
    );
    assert!(!archive_names(&out).contains(&"manifest.json".to_string()));
    assert!(unfinished(&out));
}

/// Names of the entries of a (possibly unfinished) docker archive.
fn archive_names(out: &[u8]) -> Vec<String> {
    tar::Archive::new(out)
        .entries()
        .unwrap()
        .filter_map(|e| {
            e.ok()
                .map(|e| e.path().unwrap().to_string_lossy().into_owned())
        })
        .collect()
}

/// Whether a docker archive stops after (or in) an entry, without the end-of-archive marker
/// (zero blocks) that would make it a well-formed tar.
fn unfinished(out: &[u8]) -> bool {
    let mut off = 0;
    while off + 512 <= out.len() {
        let block = &out[off..off + 512];
        if block.iter().all(|&b| b == 0) {
            return false;
        }
        let size = tar::Header::from_byte_slice(block).size().unwrap() as usize;
        off += 512 + size.div_ceil(512) * 512;
    }
    true
}

/// A bundle whose manifest lies about layer `i` and yet is consistent: the member's sha256 is
/// right, but the layer's diff_id is `evil` everywhere (manifest, member name, config, image
/// id), so only decompressing and hashing the layer finds out.
fn lying_bundle(src: &[u8], dst: &Path, i: usize, evil: &str) {
    let ms = members(src);
    let mut m: Manifest = serde_json::from_slice(&ms.last().unwrap().1).unwrap();
    let old_name = m.layers[i].member.clone().unwrap();
    let new_name = layer_member_name(evil);
    let config = &ms.iter().find(|(n, _)| n == "config.json").unwrap().1;
    let mut v: serde_json::Value = serde_json::from_slice(config).unwrap();
    v["rootfs"]["diff_ids"][i] = json!(evil);
    let config = serde_json::to_vec(&v).unwrap();
    m.layers[i].diff_id = evil.to_string();
    m.layers[i].member = Some(new_name.clone());
    m.image.as_mut().unwrap().id = sha256_digest(&config);
    let sha = m.members.remove(&old_name).unwrap();
    m.members.insert(new_name.clone(), sha);
    m.members
        .insert("config.json".into(), sha256_digest(&config));
    let mut f = File::create(dst).unwrap();
    let mut w = BundleWriter::new(&mut f, 0);
    for (n, d) in &ms[..ms.len() - 1] {
        match n.as_str() {
            "config.json" => w.add_bytes(n, &config).unwrap(),
            n if n == old_name => w.add_bytes(&new_name, d).unwrap(),
            n => w.add_bytes(n, d).unwrap(),
        }
    }
    let bytes = seal(&mut m).unwrap();
    w.add_bytes("manifest.json", &bytes).unwrap();
    w.finish().unwrap();
}

#[test]
fn consistent_lie_about_a_diff_id_fails_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_bundle(dir.path());
    let evil = sha256_digest(b"evil");
    // The first layer (its hash is checked while later layers stream) and the last one.
    for i in [0, 2] {
        let p = dir.path().join(format!("lie{i}"));
        lying_bundle(&bytes, &p, i, &evil);
        // The compressed members all match the manifest: `verify` (which does not
        // decompress) accepts it.
        let m = verify(&p).unwrap();
        assert_eq!(m.layers[i].diff_id, evil);
        let mut out = Vec::new();
        let e = write_docker_archive(&p, &m, &mut out).unwrap_err();
        match &e {
            BundleError::DiffIdMismatch {
                member,
                expected,
                actual,
            } => {
                assert_eq!(member, &layer_member_name(&evil));
                assert_eq!(expected, &evil);
                assert_eq!(actual, &Image::small().diff_ids[i]);
            }
            other => panic!("layer {i}: unexpected {other}"),
        }
        assert!(e.hint().unwrap().contains("nothing was loaded"));
        let names = archive_names(&out);
        assert!(
            names.iter().filter(|n| n.ends_with("/layer.tar")).count() > i,
            "layer {i} was streamed: {names:?}"
        );
        assert!(
            !names.contains(&"manifest.json".to_string()),
            "layer {i}: {names:?}"
        );
        assert!(unfinished(&out), "layer {i}: the archive was ended");
    }
}

/// Deterministic mutation "fuzzing": flipped and truncated bytes of a valid bundle must never
/// panic and never verify.
#[test]
fn mutations_never_verify() {
    let img = Image::new(vec![
        layer_tar(&[("a", b"alpha".to_vec())]),
        layer_tar(&[("b", noise(3000, 5))]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = export_to(
        dir.path(),
        "m.dlenv",
        &docker_archive_save(&img),
        &opts(Kind::Full),
    );
    let bytes = std::fs::read(path).unwrap();
    verify_reader(&bytes[..]).unwrap();
    let n = bytes.len();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut cases = 0;
    for _ in 0..400 {
        let mut b = bytes.clone();
        let flips = 1 + next() % 3;
        for _ in 0..flips {
            let at = (next() % n as u64) as usize;
            let bit = 1u8 << (next() % 8);
            b[at] ^= bit;
        }
        if b == bytes {
            continue;
        }
        assert!(verify_reader(&b[..]).is_err(), "a modified bundle verified");
        cases += 1;
    }
    // Every header and the manifest: flip one byte in each 512-byte block.
    for blk in 0..n / 512 {
        let mut b = bytes.clone();
        b[blk * 512 + (next() % 512) as usize] ^= 0x01;
        assert!(
            verify_reader(&b[..]).is_err(),
            "flip in block {blk} verified"
        );
        cases += 1;
    }
    for _ in 0..100 {
        let cut = (next() % n as u64) as usize;
        assert!(
            verify_reader(&bytes[..cut]).is_err(),
            "cut at {cut} verified"
        );
        cases += 1;
    }
    assert!(cases > 300);
}
