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
