//! Container round trips, and a clear error naming the section for every corruption.

use super::*;
use tensor_core::rng::Rng;

fn pruned_lenet300() -> ModelRecord {
    let mut model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(2)).unwrap();
    prune::global_magnitude(&model, 0.92)
        .unwrap()
        .apply(&mut model)
        .unwrap();
    prune::sparsify(&mut model, 1.0).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert("recipe".to_string(), "{\"stages\":[]}".to_string());
    ModelRecord::from_model(&model, meta).unwrap()
}

/// The in-memory encoder of sessions 5-8 (every section built as a `Vec`, then framed), kept
/// as the reference the streamed writer must reproduce byte for byte.
fn encode_in_memory(record: &ModelRecord, options: &WriteOptions) -> Vec<u8> {
    let mut sections: Vec<([u8; 4], Vec<u8>)> = Vec::new();
    let model = ModelSection {
        name: record.name.clone(),
        input_shape: record.input_shape.clone(),
        layers: record.layers.len() as u64,
        metadata: record.metadata.clone(),
    };
    sections.push((TAG_MODEL, native::encode_value(&model, "m").unwrap()));
    for layer in &record.layers {
        let stored = LayerSection {
            kind: layer.kind.clone(),
            attrs: layer.attrs.clone(),
            tensors: layer.tensors.clone(),
            payloads: layer
                .payloads
                .iter()
                .map(|(n, p)| (n.clone(), coding::encode(p, options.huffman)))
                .collect(),
        };
        sections.push((TAG_LAYER, native::encode_value(&stored, "l").unwrap()));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&CONTAINER_VERSION.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (tag, body) in &sections {
        out.extend_from_slice(tag);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32(body).to_le_bytes());
    }
    let header_crc = crc32(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    for (_, body) in &sections {
        out.extend_from_slice(body);
    }
    out
}

#[test]
fn the_streamed_file_is_the_in_memory_encoding() {
    let dir = std::env::temp_dir().join(format!("slimnet-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lenet5 = nn::zoo::build("lenet5", &mut Rng::seed_from_u64(1)).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert("source".to_string(), "lenet5.onnx".to_string());
    let dense = ModelRecord::from_model(&lenet5, meta.clone()).unwrap();
    let path = dir.join("lenet5.slim");
    let n = stream::save_model(&lenet5, &meta, &WriteOptions::default(), &path).unwrap();
    let file = std::fs::read(&path).unwrap();
    assert_eq!(n as usize, file.len());
    assert!(file == encode_in_memory(&dense, &WriteOptions::default()));
    // Payloads, Huffman-coded and raw: the pruned model, and through `encode` too.
    let sparse = pruned_lenet300();
    for options in [WriteOptions::default(), WriteOptions { huffman: false }] {
        let reference = encode_in_memory(&sparse, &options);
        assert!(encode(&sparse, &options).unwrap() == reference);
        let model = sparse.clone().into_model_with(&crate::registry()).unwrap();
        stream::save_model(&model, &sparse.metadata, &options, &path).unwrap();
        assert!(std::fs::read(&path).unwrap() == reference);
    }
    // A layer whose record fails: an error, the old file untouched, no temporary left.
    let before = std::fs::read(&path).unwrap();
    let mut calls = 0;
    let e = nn::io::atomic::write_atomic_with(&path, |f| {
        let layer = |i: usize| {
            calls += 1;
            if i == 2 {
                Err(NnError::Config("layer 2 failed".into()))
            } else {
                Ok(std::borrow::Cow::Borrowed(&sparse.layers[i]))
            }
        };
        let header = stream::ModelHeader {
            name: &sparse.name,
            input_shape: &sparse.input_shape,
            metadata: &sparse.metadata,
        };
        stream::write_to(
            f,
            header,
            sparse.layers.len(),
            layer,
            &WriteOptions::default(),
        )
        .map(drop)
    })
    .unwrap_err();
    assert!(e.to_string().contains("layer 2 failed"), "{e}");
    assert_eq!(calls, 3, "layers are asked for one at a time, in order");
    assert!(std::fs::read(&path).unwrap() == before);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no debris");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dense_and_sparse_models_round_trip_and_huffman_is_smaller() {
    let dense = ModelRecord::from_model(
        &nn::zoo::build("lenet5", &mut Rng::seed_from_u64(1)).unwrap(),
        BTreeMap::new(),
    )
    .unwrap();
    let bytes = encode(&dense, &WriteOptions::default()).unwrap();
    assert!(is_container(&bytes));
    assert_eq!(decode(&bytes, "d").unwrap(), dense);
    assert_eq!(sections(&bytes, "d").unwrap().len(), 1 + dense.layers.len());

    let sparse = pruned_lenet300();
    let plain = encode(&sparse, &WriteOptions { huffman: false }).unwrap();
    let coded = encode(&sparse, &WriteOptions::default()).unwrap();
    assert_eq!(decode(&plain, "p").unwrap(), sparse);
    assert_eq!(decode(&coded, "c").unwrap(), sparse);
    assert!(
        coded.len() < plain.len(),
        "coded {} plain {}",
        coded.len(),
        plain.len()
    );
    // Same record, same bytes.
    assert_eq!(encode(&sparse, &WriteOptions::default()).unwrap(), coded);
    // Older single-record files still read.
    let v2 = nn::io::native::encode(&sparse).unwrap();
    assert_eq!(decode_any(&v2, "v2").unwrap(), sparse);
    assert_eq!(decode_any(&coded, "v3").unwrap(), sparse);
    // nn alone points at the container reader.
    let e = nn::io::native::decode(&coded, "v3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pipeline::load"), "{e}");
}

#[test]
fn every_corruption_names_its_section() {
    let record = pruned_lenet300();
    let bytes = encode(&record, &WriteOptions::default()).unwrap();
    let infos = sections(&bytes, "f").unwrap();
    // A flipped byte inside each section: that section's checksum.
    for (i, s) in infos.iter().enumerate() {
        let mut bad = bytes.clone();
        bad[(s.offset + s.len / 2) as usize] ^= 0x40;
        let e = decode(&bad, "f.slim").unwrap_err().to_string();
        assert!(
            e.contains(&format!("section {i} ({}", s.tag)) && e.contains("CRC"),
            "{e}"
        );
    }
    // A flipped byte in the table: the table's checksum.
    let mut bad = bytes.clone();
    bad[HEADER_LEN + 5] ^= 1;
    let e = decode(&bad, "f.slim").unwrap_err().to_string();
    assert!(e.contains("section table"), "{e}");
    // Truncation anywhere: an error, never a panic.
    for cut in [
        0,
        3,
        12,
        17,
        HEADER_LEN + 20,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let e = decode(&bytes[..cut], "f.slim").unwrap_err().to_string();
        assert!(e.contains("f.slim"), "{e}");
        assert!(
            e.contains("truncated") || e.contains("shorter") || e.contains("CRC"),
            "cut {cut}: {e}"
        );
    }
    // A version mismatch names the header.
    let mut bad = bytes.clone();
    bad[8] = 4;
    let e = decode(&bad, "f.slim").unwrap_err().to_string();
    assert!(
        e.contains("container header") && e.contains("version 4"),
        "{e}"
    );
    // An absurd section count is refused before anything is allocated.
    let mut bad = bytes.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(
        decode(&bad, "f")
            .unwrap_err()
            .to_string()
            .contains("sections declared")
    );
    // Extra bytes after the last section.
    let mut bad = bytes.clone();
    bad.push(0);
    assert!(
        decode(&bad, "f")
            .unwrap_err()
            .to_string()
            .contains("sections end")
    );
}

/// Rewrites one section's body and fixes every checksum, so the reader's checks behind
/// the CRCs are reached.
fn with_section(bytes: &[u8], index: usize, body: Vec<u8>) -> Vec<u8> {
    let infos = sections(bytes, "f").unwrap();
    let count = infos.len();
    let mut out = bytes[..HEADER_LEN + ENTRY_LEN * count].to_vec();
    let at = HEADER_LEN + ENTRY_LEN * index;
    out[at + 4..at + 12].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[at + 12..at + 16].copy_from_slice(&crc32(&body).to_le_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for (i, s) in infos.iter().enumerate() {
        if i == index {
            out.extend_from_slice(&body);
        } else {
            out.extend_from_slice(&bytes[s.offset as usize..(s.offset + s.len) as usize]);
        }
    }
    out
}

#[test]
fn well_checksummed_nonsense_is_refused_with_the_section_named() {
    let record = pruned_lenet300();
    let bytes = encode(&record, &WriteOptions::default()).unwrap();
    // Garbage inside a layer section.
    let bad = with_section(&bytes, 2, vec![0xff; 40]);
    let e = decode(&bad, "f.slim").unwrap_err().to_string();
    assert!(e.contains("section 2 (LAYR, layer 1)"), "{e}");
    // A model section declaring another layer count.
    let model = ModelSection {
        name: "x".into(),
        input_shape: vec![1, 28, 28],
        layers: 99,
        metadata: BTreeMap::new(),
    };
    let bad = with_section(&bytes, 0, native::encode_value(&model, "t").unwrap());
    let e = decode(&bad, "f.slim").unwrap_err().to_string();
    assert!(e.contains("99 layers declared"), "{e}");
    // A layer payload that decodes but lies about its length.
    let infos = sections(&bytes, "f").unwrap();
    let (i, s) = infos
        .iter()
        .enumerate()
        .find(|(_, s)| {
            s.tag == "LAYR" && {
                let l: LayerSection = native::decode_value(
                    &bytes[s.offset as usize..(s.offset + s.len) as usize],
                    "f",
                    "l",
                )
                .unwrap();
                !l.payloads.is_empty()
            }
        })
        .unwrap();
    let mut layer: LayerSection = native::decode_value(
        &bytes[s.offset as usize..(s.offset + s.len) as usize],
        "f",
        "l",
    )
    .unwrap();
    layer.payloads[0].1.dims = vec![3];
    let bad = with_section(&bytes, i, native::encode_value(&layer, "t").unwrap());
    let e = decode(&bad, "f.slim").unwrap_err().to_string();
    assert!(
        e.contains(&format!("section {i} (LAYR")) && e.contains("payload"),
        "{e}"
    );
}

#[test]
fn sparse_layers_at_every_density_decode() {
    // Sections of every size class round trip (nn's decode limit once refused a section just
    // under a power of two: `nn::io::native::limit_bits`).
    for sparsity in [0.5, 0.8, 0.9, 0.917, 0.93, 0.95, 0.96, 0.97, 0.98] {
        let mut model =
            nn::zoo::build("lenet300", &mut tensor_core::rng::Rng::seed_from_u64(3)).unwrap();
        prune::global_magnitude(&model, sparsity)
            .unwrap()
            .apply(&mut model)
            .unwrap();
        prune::sparsify(&mut model, 1.0).unwrap();
        let record = nn::io::native::ModelRecord::from_model(&model, Default::default()).unwrap();
        for huffman in [false, true] {
            let bytes = super::encode(&record, &super::WriteOptions { huffman }).unwrap();
            let back = super::decode(&bytes, "t")
                .unwrap_or_else(|e| panic!("sparsity {sparsity}, huffman {huffman}: {e}"));
            assert_eq!(back, record);
        }
    }
}

#[test]
fn metadata_is_read_from_the_model_section_alone() {
    let dir = std::env::temp_dir().join(format!("slimnet-meta-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = pruned_lenet300();
    let bytes = encode(&record, &WriteOptions::default()).unwrap();
    let path = dir.join("m.slim");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_metadata(&path).unwrap(), record.metadata);
    assert_eq!(crate::load_metadata(&path).unwrap(), record.metadata);
    let v2 = dir.join("m2.model");
    std::fs::write(&v2, nn::io::native::encode(&record).unwrap()).unwrap();
    assert_eq!(crate::load_metadata(&v2).unwrap(), record.metadata);
    // A flipped byte in a layer section is not read; in the model section it is an error.
    let infos = sections(&bytes, "f").unwrap();
    let mut layer_flip = bytes.clone();
    layer_flip[infos[1].offset as usize + 3] ^= 1;
    std::fs::write(&path, &layer_flip).unwrap();
    assert_eq!(read_metadata(&path).unwrap(), record.metadata);
    let mut model_flip = bytes.clone();
    model_flip[infos[0].offset as usize + 1] ^= 1;
    std::fs::write(&path, &model_flip).unwrap();
    let e = read_metadata(&path).unwrap_err().to_string();
    assert!(
        e.contains("section 0 (MODL)") && e.contains("CRC-32"),
        "{e}"
    );
    // Truncations anywhere: an error naming the file, never a panic.
    for cut in [
        0,
        5,
        HEADER_LEN,
        HEADER_LEN + 20,
        infos[0].offset as usize + 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = read_metadata(&path).unwrap_err().to_string();
        assert!(e.contains("m.slim"), "cut {cut}: {e}");
    }
    // A section count beyond the limit is refused before any table is read.
    let mut many = bytes.clone();
    many[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &many).unwrap();
    let e = read_metadata(&path).unwrap_err().to_string();
    assert!(e.contains("sections declared"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
