// face-api and Human on the benchmark's inputs: Node, pure tfjs, WebAssembly backend, models from
// their npm packages (nothing downloaded). Usage: node run.js WORK_DIR [--accuracy-only]
// On a taiwan-posed work folder (taiwan.json, see prepare.py): each end to end on the whole photos
// (the largest face of each) and each classifier on our detector's box (our_box), accuracy only.
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { Human } = require(path.join(__dirname, 'node_modules/@vladmandic/human/dist/human.node-wasm.js')); // its "exports" map lacks './' prefixes

const here = __dirname;
const common = JSON.parse(fs.readFileSync(path.join(here, '..', 'common.json'), 'utf8'));
const modules = path.join(here, 'node_modules');
const wasmDir = path.join(modules, '@tensorflow', 'tfjs-backend-wasm', 'dist') + path.sep;
const faceapiModels = path.join(modules, '@vladmandic', 'face-api', 'model');
const humanModels = path.join(modules, '@vladmandic', 'human', 'models');

// Peers' labels, renamed to FER+'s (common.json's classes)
const FACEAPI = { neutral: 'neutral', happy: 'happiness', surprised: 'surprise', sad: 'sadness',
  angry: 'anger', disgusted: 'disgust', fearful: 'fear' };
const HUMAN_EMOTION = ['anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise', 'neutral'];
const HUMAN_NAMES = { angry: 'anger', disgust: 'disgust', fear: 'fear', happy: 'happiness', sad: 'sadness',
  surprise: 'surprise', neutral: 'neutral' };
const HUMAN_MESH_SIZE = 192;  // Human's face mesh input, the crop its emotion model is given

// tfjs without tfjs-node has no file:// loader: read model.json and its shards from disk.
tf.io.registerLoadRouter((url) => {
  if (typeof url !== 'string' || !url.startsWith('file://')) return null;
  const file = url.slice('file://'.length);
  return {
    load: async () => {
      const json = JSON.parse(fs.readFileSync(file, 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const shard of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(file), shard)));
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: json.modelTopology, format: json.format, generatedBy: json.generatedBy,
        convertedBy: json.convertedBy, weightSpecs: specs, userDefinedMetadata: json.userDefinedMetadata,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
});

function loadFaces(work) {
  const meta = JSON.parse(fs.readFileSync(path.join(work, 'faces.json'), 'utf8'));
  const bytes = fs.readFileSync(path.join(work, 'faces.u8'));
  const size = meta.size * meta.size;
  return Array.from({ length: meta.n }, (_, i) => bytes.subarray(i * size, (i + 1) * size));
}

function loadPhotos(work) {
  const photos = JSON.parse(fs.readFileSync(path.join(work, 'photos.json'), 'utf8'));
  return photos.map((p) => ({ meta: p, rgb: fs.readFileSync(path.join(work, 'photos', `${p.file}.rgb`)) }));
}

// a 48x48 gray crop as the RGB [48, 48, 3] int tensor both libraries take from an image
function faceTensor(gray) {
  return tf.tidy(() => tf.tensor3d(gray, [48, 48, 1], 'int32').tile([1, 1, 3]));
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function timePerFace(classifyOne, faces) {
  for (const face of faces.slice(0, common.warmup_faces)) await classifyOne(face);
  const times = [];
  for (const face of faces.slice(0, common.timed_faces)) {
    const start = performance.now();
    await classifyOne(face);
    times.push(performance.now() - start);
  }
  return median(times);
}

async function endToEnd(detectAndClassify, photos) {
  const boxes = {};  // [x, y, w, h] per face; report.py scores them against the labelled faces
  for (const { meta, rgb } of photos) {
    boxes[meta.file] = (await detectAndClassify(rgb, meta)).map((box) => box.map((v) => Math.round(v)));
  }
  const start = performance.now();
  for (let r = 0; r < common.photo_repeats; r++) {
    for (const { meta, rgb } of photos) await detectAndClassify(rgb, meta);
  }
  const seconds = (performance.now() - start) / 1000;
  return {
    fps: (common.photo_repeats * photos.length) / seconds,
    faces_found: Object.values(boxes).reduce((a, b) => a + b.length, 0),
    faces_true: photos.reduce((a, p) => a + p.meta.faces, 0),
    boxes,
  };
}

function loadTaiwan(work) {
  const photos = JSON.parse(fs.readFileSync(path.join(work, 'taiwan.json'), 'utf8'));
  return photos.map((p) => ({ meta: p, rgb: fs.readFileSync(path.join(work, 'photos', `${p.file}.rgb`)) }));
}

function largest(boxes) {  // index of the largest [x, y, w, h], -1 when none
  let best = -1;
  boxes.forEach((b, i) => { if (best < 0 || b[2] * b[3] > boxes[best][2] * boxes[best][3]) best = i; });
  return best;
}

function inCommonOrder(byName) {
  return common.classes.map((name) => byName[name]);
}

// face-api: its expression net on the crop; end to end SSD MobileNet v1 + landmarks + expressions
async function faceapiClassify(gray) {
  const input = faceTensor(gray);
  const result = await faceapi.nets.faceExpressionNet.predictExpressions(input);
  input.dispose();
  const byName = {};
  for (const [key, name] of Object.entries(FACEAPI)) byName[name] = result[key];
  return inCommonOrder(byName);
}

async function faceapiDetect(rgb, meta) {
  const input = tf.tensor3d(rgb, [meta.height, meta.width, 3], 'int32');
  const found = await faceapi.detectAllFaces(input, new faceapi.SsdMobilenetv1Options())
    .withFaceLandmarks().withFaceExpressions();
  input.dispose();
  return found.map((f) => { const b = f.detection.box; return [b.x, b.y, b.width, b.height]; });
}

function faceapiProbs(expressions) {
  const byName = {};
  for (const [key, name] of Object.entries(FACEAPI)) byName[name] = expressions[key];
  return inCommonOrder(byName);
}

// face-api on a given box, as its own pipeline treats a detection: 68 landmarks in the box, then
// the expression net on the landmark-aligned box (withFaceLandmarks().withFaceExpressions())
async function faceapiOnBox(input, [x, y, w, h], width, height) {
  const detection = new faceapi.FaceDetection(1, new faceapi.Rect(x / width, y / height, w / width, h / height),
    { width, height });
  const [crop] = await faceapi.extractFaceTensors(input, [detection]);
  const landmarks = await faceapi.nets.faceLandmark68Net.detectLandmarks(crop);
  crop.dispose();
  const withLandmarks = faceapi.extendWithFaceLandmarks(faceapi.extendWithFaceDetection({}, detection), landmarks);
  const [aligned] = await faceapi.extractFaceTensors(input, [withLandmarks.alignedRect]);
  const expressions = await faceapi.nets.faceExpressionNet.predictExpressions(aligned);
  aligned.dispose();
  return faceapiProbs(expressions);
}

async function faceapiTaiwan(photos) {
  const result = { photo_probs: [], photo_boxes: [], our_box_probs: [] };
  for (const { meta, rgb } of photos) {
    const input = tf.tensor3d(rgb, [meta.height, meta.width, 3], 'int32');
    const found = await faceapi.detectAllFaces(input, new faceapi.SsdMobilenetv1Options())
      .withFaceLandmarks().withFaceExpressions();
    const i = largest(found.map((f) => { const b = f.detection.box; return [b.x, b.y, b.width, b.height]; }));
    const b = i < 0 ? null : found[i].detection.box;
    result.photo_boxes.push(b && [b.x, b.y, b.width, b.height].map(Math.round));
    result.photo_probs.push(i < 0 ? null : faceapiProbs(found[i].expressions));
    result.our_box_probs.push(meta.our_box && await faceapiOnBox(input, meta.our_box, meta.width, meta.height));
    input.dispose();
  }
  return result;
}

// Human: its emotion model on the crop with Human's own preprocessing (src/gear/emotion.ts);
// end to end, Human.detect with face detector, mesh and emotion (the rest of Human switched off)
let emotionModel = null;
// Human's emotion model on an image tensor ([1, H, W, 3] in [0, 1]) that makeImage builds: its own
// preprocessing (resize to the model's input, gray, scaled to [-1, 1]), scores in common order
async function humanEmotion(makeImage) {
  const output = tf.tidy(() => {
    const size = emotionModel.inputs[0].shape[2];
    const resized = tf.image.resizeBilinear(makeImage(), [size, size], false);
    const grayscale = tf.sum(tf.mul(resized, [0.2989, 0.5870, 0.1140]), 3, true);
    return emotionModel.execute(tf.mul(tf.sub(grayscale, 0.5), 2));
  });
  const data = await output.data();
  output.dispose();
  const byName = {};
  HUMAN_EMOTION.forEach((name, i) => { byName[name] = data[i]; });
  return inCommonOrder(byName);
}

async function humanClassify(gray) {
  return humanEmotion(() => tf.tensor4d(gray, [1, 48, 48, 1], 'float32').div(255).tile([1, 1, 1, 3]));
}

// Human's emotion model on a given box, framed as Human frames its detector's box for it (enlarged by
// face.detector.scale, squared, cut to the mesh input) before its emotion preprocessing
async function humanOnBox(human, input, [x, y, w, h], width, height) {
  const side = Math.max(w, h) * human.config.face.detector.scale;
  const [cx, cy] = [x + w / 2, y + h / 2];
  const box = [(cy - side / 2) / height, (cx - side / 2) / width, (cy + side / 2) / height, (cx + side / 2) / width];
  return humanEmotion(() => tf.image.cropAndResize(input, [box], [0], [HUMAN_MESH_SIZE, HUMAN_MESH_SIZE]).div(255));
}

// Human's result lists emotions by score (truncated to 0.01; all seven with minConfidence 0): a tie
// is broken by 1e-6 per rank, so that the arg-max is Human's own first emotion
function humanProbs(emotions) {
  const byName = {};
  emotions.forEach(({ score, emotion }, rank) => { byName[HUMAN_NAMES[emotion]] = score - rank * 1e-6; });
  return common.classes.map((name) => byName[name] || 0);
}

async function humanTaiwan(human, photos) {
  const result = { photo_probs: [], photo_boxes: [], our_box_probs: [] };
  for (const { meta, rgb } of photos) {
    const input = tf.tensor4d(rgb, [1, meta.height, meta.width, 3], 'float32');
    const faces = (await human.detect(input)).face.filter((f) => f.emotion && f.emotion.length);
    const i = largest(faces.map((f) => f.box));
    result.photo_boxes.push(i < 0 ? null : faces[i].box.map(Math.round));
    result.photo_probs.push(i < 0 ? null : humanProbs(faces[i].emotion));
    result.our_box_probs.push(meta.our_box && await humanOnBox(human, input, meta.our_box, meta.width, meta.height));
    input.dispose();
  }
  return result;
}

function humanConfig() {
  return {
    backend: 'wasm', wasmPath: wasmDir, modelBasePath: `file://${humanModels}/`, debug: false,
    cacheSensitivity: 0, // every photo is a new frame: no result reuse
    face: { enabled: true, detector: { maxDetected: 50 }, mesh: { enabled: true }, iris: { enabled: false },
      description: { enabled: false }, emotion: { enabled: true }, antispoof: { enabled: false },
      liveness: { enabled: false } },
    body: { enabled: false }, hand: { enabled: false }, object: { enabled: false },
    gesture: { enabled: false }, segmentation: { enabled: false },
  };
}

async function humanDetect(human, rgb, meta) {
  const input = tf.tensor4d(rgb, [1, meta.height, meta.width, 3], 'float32');
  const result = await human.detect(input);
  input.dispose();
  return result.face.filter((f) => f.emotion && f.emotion.length).map((f) => f.box);
}

// tfjs-backend-wasm has no multithreading in Node (WASM_HAS_MULTITHREAD_SUPPORT is false there),
// so both peers run on one thread whatever is asked; the thread count used is recorded.
async function setBackend() {
  wasm.setWasmPaths(wasmDir);
  wasm.setThreadsCount(2);
  await tf.setBackend('wasm');
  await tf.ready();
  return wasm.getThreadsCount();
}

function writeResult(work, key, result) {
  const out = path.join(work, 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, `${key}.json`), JSON.stringify({ key, ...result }));
  console.log(`${key}: wrote ${path.join(out, key + '.json')}`);
}

async function taiwan(work) {
  const photos = loadTaiwan(work);
  const threads = await setBackend();
  const backend = `tfjs ${tf.version.tfjs} wasm, ${threads} thread(s)`;
  await faceapi.nets.faceExpressionNet.loadFromDisk(faceapiModels);
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(faceapiModels);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(faceapiModels);
  writeResult(work, 'face-api', { system: 'face-api: detectAllFaces + landmarks + expressions',
    package: `@vladmandic/face-api ${faceapi.version}, ${backend}`, detector: 'SSD MobileNet v1 + 68 landmarks',
    ...await faceapiTaiwan(photos) });
  const config = humanConfig();
  config.face.emotion.minConfidence = 0;  // every score, not only those over 0.1
  const human = new Human(config);
  await human.load();
  emotionModel = await tf.loadGraphModel(`file://${path.join(humanModels, 'emotion.json')}`);
  writeResult(work, 'human', { system: 'Human: detect (face, mesh, emotion)',
    package: `@vladmandic/human ${human.version}, ${backend}`, detector: 'BlazeFace + face mesh',
    ...await humanTaiwan(human, photos) });
}

async function main() {
  const work = path.resolve(process.argv[2]);
  if (fs.existsSync(path.join(work, 'taiwan.json'))) return taiwan(work);
  const timed = process.argv[3] !== '--accuracy-only';  // probabilities only for a second face set
  const faces = loadFaces(work);
  const photos = loadPhotos(work);
  const threads = await setBackend();
  const backend = `tfjs ${tf.version.tfjs} wasm, ${threads} thread(s)`;
  const results = {};

  await faceapi.nets.faceExpressionNet.loadFromDisk(faceapiModels);
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(faceapiModels);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(faceapiModels);
  results['face-api'] = { system: 'face-api: expression net on the crop',
    package: `@vladmandic/face-api ${faceapi.version}, ${backend}`, input: '112 px RGB',
    detector: 'SSD MobileNet v1 + 68 landmarks' };
  results['face-api'].probs = [];
  for (const face of faces) results['face-api'].probs.push(await faceapiClassify(face));
  results['face-api'].threads = threads;
  if (timed) {
    results['face-api'][`ms_per_face_${threads}t`] = await timePerFace(faceapiClassify, faces);
    results['face-api'][`end_to_end_${threads}t`] = await endToEnd(faceapiDetect, photos);
  }

  const human = new Human(humanConfig());
  await human.load();
  emotionModel = await tf.loadGraphModel(`file://${path.join(humanModels, 'emotion.json')}`);
  results.human = { system: 'Human: emotion model on the crop',
    package: `@vladmandic/human ${human.version}, ${backend}`, input: '64 px gray',
    detector: 'BlazeFace + face mesh' };
  results.human.probs = [];
  for (const face of faces) results.human.probs.push(await humanClassify(face));
  results.human.threads = threads;
  if (timed) {
    results.human[`ms_per_face_${threads}t`] = await timePerFace(humanClassify, faces);
    results.human[`end_to_end_${threads}t`] = await endToEnd((rgb, meta) => humanDetect(human, rgb, meta), photos);
  }

  for (const [key, result] of Object.entries(results)) writeResult(work, key, result);
}

main().catch((err) => { console.error(err); process.exit(1); });
