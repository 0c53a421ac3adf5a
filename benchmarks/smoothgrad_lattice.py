"""SmoothGrad's dot lattice on the demo model (issue 13): lattice spectral share, peaks in the box, phase by (row, col) mod 4, for saliency and SmoothGrad variants. Run: python benchmarks/smoothgrad_lattice.py"""
import numpy as np, torch, vexplain as vx
from vexplain.demo.model import demo_adapter, preprocess
from vexplain.demo.scenes import generate_dataset
adapter = demo_adapter()
images, labels, boxes = generate_dataset(32, seed=2026, size=64)
images, labels, boxes = images[:8], labels[:8], boxes[:8]
x = preprocess(images)
def lattice(m):
    """share of non-DC spectral power at the period-2 and period-4 frequencies (rows or columns)"""
    m = m - m.mean(axis=(1, 2), keepdims=True)
    p = np.abs(np.fft.fft2(m)) ** 2
    mask = np.zeros(p.shape[1:], bool)
    for k in (16, 32, 48):
        mask[k, :] = True; mask[:, k] = True
    return (p[:, mask].sum(1) / p.reshape(len(m), -1).sum(1))
def corner(m, r=6):
    peaks = [np.unravel_index(np.argmax(a), a.shape) for a in m]
    return sum((min(py, 63 - py) < r and min(px, 63 - px) < r) for py, px in peaks)
def inbox(m):
    peaks = [np.unravel_index(np.argmax(a), a.shape) for a in m]
    return sum(b[0] <= px < b[2] and b[1] <= py < b[3] for (py, px), b in zip(peaks, boxes))
runs = {
    "saliency": dict(method="saliency"),
    "saliency abs=False": dict(method="saliency", abs=False),
    "smoothgrad noise=0": dict(method="smoothgrad", noise=0.0, samples=2),
    "smoothgrad (default 0.15, 25)": dict(method="smoothgrad"),
    "smoothgrad noise=0.05": dict(method="smoothgrad", noise=0.05),
    "smoothgrad 0.15, 100 samples": dict(method="smoothgrad", samples=100),
    "smoothgrad base abs=False": dict(method="smoothgrad", base_options={"abs": False}),
}
sal = None
for name, kw in runs.items():
    exp = vx.explain(adapter, x, targets=labels, **kw)
    m = exp.maps
    if name == "saliency": sal = m
    extra = f" max|diff vs saliency|={np.abs(m - sal).max():.2e}" if kw.get("noise") == 0.0 else ""
    print(f"{name:32s} lattice power share {lattice(m).mean():.3f} (per scene {np.round(lattice(m), 2).tolist()}) peaks in a corner {corner(m)}/8 in box {inbox(m)}/8{extra}")
# the lattice as a property of the model: gradient of the score at pure noise inputs (no scene)
g = torch.Generator().manual_seed(0)
noise_inputs = torch.randn((8, 3, 64, 64), generator=g) * 0.6
m = vx.explain(adapter, noise_inputs, method="saliency", targets=labels).maps
print(f"{'saliency on pure-noise inputs':32s} lattice power share {lattice(m).mean():.3f} peaks in a corner {corner(m)}/8")
# mean over rows/cols modulo 4 of the default smoothgrad map: the lattice phase
exp = vx.explain(adapter, x, method="smoothgrad", targets=labels)
mm = exp.maps / exp.maps.mean(axis=(1, 2), keepdims=True)
print("smoothgrad mean value by (row mod 4, col mod 4), relative to the map mean:")
print(np.round(np.array([[mm[:, r::4, c::4].mean() for c in range(4)] for r in range(4)]), 2))
mm = sal / sal.mean(axis=(1, 2), keepdims=True)
print("saliency, same:")
print(np.round(np.array([[mm[:, r::4, c::4].mean() for c in range(4)] for r in range(4)]), 2))
