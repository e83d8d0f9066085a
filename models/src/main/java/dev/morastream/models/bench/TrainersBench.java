package dev.morastream.models.bench;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Several trainers (one adapter each, one domain each) on the shared frozen base: the tokens per
 * second of all of them stepping at once, against the same trainers stepping one after another.
 * Trainer i trains on GPU i mod n when the engine has GPUs (one model copy per device), else all
 * on the CPU model. On CPU the speedup is bounded by the cores that one step leaves idle; with a
 * GPU each it is the point.
 */
public final class TrainersBench {
    /**
     * @param domains trainers measured
     * @param tokensPerSAlone trained tokens per second of all trainers, stepping one at a time
     * @param tokensPerSTogether the same trainers, each on its own thread, all stepping at once
     * @param speedup together / alone
     * @param devices device of each trainer
     */
    public record Result(int domains, double tokensPerSAlone, double tokensPerSTogether, double speedup, List<String> devices) {}

    private TrainersBench() {}

    public static Result run(Path modelDir, int domains, int rank, int batchSize, int seqLen, int warmup, int steps) throws Exception {
        int gpus = Engine.getInstance().getGpuCount();
        Map<Device, LlamaModel> models = new LinkedHashMap<>();
        List<NDManager> roots = new ArrayList<>();
        List<IncrementalTrainer> trainers = new ArrayList<>();
        List<TrainBatch> batches = new ArrayList<>();
        List<String> devices = new ArrayList<>();
        ExecutorService pool = Executors.newFixedThreadPool(domains);
        try {
            for (int i = 0; i < domains; i++) {
                Device device = gpus > 0 ? Device.gpu(i % gpus) : Device.cpu();
                LlamaModel model = models.computeIfAbsent(device, d -> {
                    NDManager root = NDManager.newBaseManager(d);
                    roots.add(root);
                    return LlamaModel.load(modelDir, root);
                });
                int t = Math.min(seqLen, model.config().maxPositionEmbeddings());
                trainers.add(new IncrementalTrainer(model, AdapterSpec.mora(rank, null).withSeed(i),
                        TrainerConfig.constant(1e-4).withMeasureAfter(false)));
                batches.add(StepBench.randomBatch(batchSize, t, model.config().vocabSize(), 100 + i));
                devices.add(device.toString());
            }
            // warm-up: every trainer on its own thread once, so each thread's engine state exists
            runTogether(pool, trainers, batches, warmup);
            long tokens = 0;
            long t0 = System.nanoTime();
            for (int i = 0; i < domains; i++) {
                for (int s = 0; s < steps; s++) {
                    trainers.get(i).step(batches.get(i));
                    tokens += batches.get(i).predictions();
                }
            }
            double alone = tokens / ((System.nanoTime() - t0) / 1e9);
            t0 = System.nanoTime();
            long together = runTogether(pool, trainers, batches, steps);
            double both = together / ((System.nanoTime() - t0) / 1e9);
            return new Result(domains, alone, both, both / alone, devices);
        } finally {
            pool.shutdownNow();
            trainers.forEach(IncrementalTrainer::close);
            roots.forEach(NDManager::close);
        }
    }

    private static long runTogether(ExecutorService pool, List<IncrementalTrainer> trainers, List<TrainBatch> batches, int steps)
            throws Exception {
        CyclicBarrier start = new CyclicBarrier(trainers.size());
        List<Future<Long>> fs = new ArrayList<>();
        for (int i = 0; i < trainers.size(); i++) {
            IncrementalTrainer tr = trainers.get(i);
            TrainBatch b = batches.get(i);
            fs.add(pool.submit(() -> {
                start.await();
                long n = 0;
                for (int s = 0; s < steps; s++) {
                    tr.step(b);
                    n += b.predictions();
                }
                return n;
            }));
        }
        long total = 0;
        for (Future<Long> f : fs) {
            total += f.get();
        }
        return total;
    }
}
