//! Imports an ONNX file and reports the weight bytes, for measuring the importer's peak
//! memory from outside (`/usr/bin/time -v`): the process does nothing else, so its maximum
//! resident set is the import's.
//!
//! `cargo run --release -p nn --example onnx_import_memory -- MODEL.onnx [INPUT.npy]`: with an
//! input, one forward pass on it follows (as `slimnet run` does).

use nn::Mode;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: onnx_import_memory MODEL.onnx [INPUT.npy]")?;
    let file = std::fs::metadata(&path)?.len();
    let t = std::time::Instant::now();
    let mut model = nn::io::onnx::import(&path)?;
    let secs = t.elapsed().as_secs_f64();
    let params = model.param_count();
    println!(
        "{path}: file {file} bytes, {params} parameters ({} bytes of f32), imported in {secs:.2} s",
        params * 4
    );
    if let Some(input) = args.next() {
        let x = nn::io::npy::read_npy(&input)?;
        let y = model.forward(&x, Mode::Eval)?;
        println!("forward {:?} -> {:?}", x.dims(), y.dims());
    }
    Ok(())
}
