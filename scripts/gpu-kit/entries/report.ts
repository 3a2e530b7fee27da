// The kit's report writer (scripts/gpu-kit/report.ts): no GPU.
import '../report.js';
