// The kit's correctness suite (scripts/gpu-kit/check.ts) with Dawn registered first.
import './dawn.js';
import '../check.js';
