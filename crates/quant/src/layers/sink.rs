//! Where a quantized convolution puts its requantized outputs: f32 planes (the layer's tensor
//! output), or u8 codes laid out for the next quantized layer of a chain (channels-last inside
//! the next convolution's padding, or `[O, PH, PW]` order for a flatten into a linear layer).
//! Tasks that own disjoint output positions write through one sink.

use tensor_core::dispatch::Int8Path;

use super::core::{IntegerCore, QuantOutput};

/// A task's scratch row for one output position: real values or codes.
#[derive(Debug, Default)]
pub(crate) struct Row {
    values: Vec<f32>,
    codes: Vec<u8>,
}

/// A slice shared by tasks that write disjoint elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shared<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks write disjoint elements (each band owns its output positions), and the slice
// outlives every task (a forward pass joins them before returning).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub(crate) fn new(y: &mut [T]) -> Self {
        Self {
            ptr: y.as_mut_ptr(),
            len: y.len(),
        }
    }

    /// `y[start .. start + len]` as a slice.
    ///
    /// # Safety
    /// No other task may access these elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn run(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// `y[j * plane + pos] = values[j]` for every `j`.
    ///
    /// # Safety
    /// No other task may write position `pos` of any plane.
    unsafe fn scatter(&self, pos: usize, plane: usize, values: impl ExactSizeIterator<Item = T>) {
        assert!(pos < plane && values.len() * plane <= self.len);
        for (j, v) in values.enumerate() {
            // SAFETY: j * plane + pos < values.len() * plane <= len (checked above).
            unsafe { self.ptr.add(j * plane + pos).write(v) };
        }
    }
}

/// The frame of a channels-last image inside its padding: a position `(y, x)` of the image
/// holds its `channels` codes at byte `((y + top) * wp + x + left) * channels`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub(crate) wp: usize,
    pub(crate) top: usize,
    pub(crate) left: usize,
}

/// One image's output of a quantized convolution with `[O, PH, PW]` positions.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sink {
    /// f32 values in `[O, PH, PW]` planes (the layer's tensor).
    Planes(Shared<f32>),
    /// u8 codes channels-last inside the next convolution's padding.
    ChannelsLast(Shared<u8>, Frame),
    /// u8 codes in `[O, PH, PW]` order (flattened into a linear layer's input row).
    CodePlanes(Shared<u8>),
}

impl Sink {
    /// Finishes output row `py` (of a `ph x pw` output) from its raw sums `raw` (`pw`
    /// positions of `o` channels, position-major), requantizing on `path`'s vector width;
    /// `row` is scratch.
    ///
    /// # Safety
    /// No other task writes row `py`; the u8 sinks only for a core that emits codes
    /// ([`QuantOutput::Codes`]; else the row is left as it is).
    pub(crate) unsafe fn put_row(
        self,
        path: Int8Path,
        core: &IntegerCore,
        (py, ph, pw): (usize, usize, usize),
        raw: &[i32],
        row: &mut Row,
    ) {
        let o = raw.len() / pw.max(1);
        let codes = match core.output() {
            QuantOutput::Codes(p) => Some(p),
            QuantOutput::Float => None,
        };
        match (self, codes) {
            (Sink::Planes(y), _) => {
                row.values.resize(o, 0.0);
                for (px, raw) in raw.chunks_exact(o.max(1)).enumerate() {
                    core.finish_row(raw, &mut row.values);
                    // SAFETY: forwarded from the caller.
                    unsafe { y.scatter(py * pw + px, ph * pw, row.values.iter().copied()) };
                }
            }
            (Sink::ChannelsLast(y, f), Some(p)) => {
                // The row's positions are consecutive in the channels-last image.
                let at = ((py + f.top) * f.wp + f.left) * o;
                // SAFETY: forwarded from the caller (row py owns these bytes).
                let dst = unsafe { y.run(at, pw * o) };
                core.requant(p).codes_u8(path, raw, dst);
            }
            (Sink::CodePlanes(y), Some(p)) => {
                row.codes.resize(pw * o, 0);
                core.requant(p).codes_u8(path, raw, &mut row.codes);
                for (px, codes) in row.codes.chunks_exact(o.max(1)).enumerate() {
                    // SAFETY: forwarded from the caller.
                    unsafe { y.scatter(py * pw + px, ph * pw, codes.iter().copied()) };
                }
            }
            (_, None) => {}
        }
    }
}
