package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.llama.LlamaModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A ReMoRA/ReLoRA run's export is what it trained: the merged model plus the current cycle's
 * adapter give, on a fixed batch, the loss the trainer itself computes at the end of training.
 */
class TrainerExportTest {
    static final TrainBatch PROBE = IncrementalTrainerTest.batch(7);

    /** The base model on disk, as `bin/mora train --model DIR` reads it. */
    static Path baseDir(Path tmp) throws Exception {
        Path dir = tmp.resolve("base");
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(4), root)) {
            model.save(dir, DType.F32, Long.MAX_VALUE, Map.of());
        }
        Files.writeString(dir.resolve("generation_config.json"), "{\"do_sample\": false}");
        return dir;
    }

    /** Trains {@code steps} micro-batches (2 per optimizer step), exports, and returns {trainer's loss, loss of the reloaded export}. */
    static double[] trainAndReload(Path tmp, AdapterSpec spec, TrainerConfig cfg, int steps, int restarts) throws Exception {
        Path base = baseDir(tmp);
        Path out = tmp.resolve("out");
        double trained;
        TrainerExport.Exported e;
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(base, root);
                IncrementalTrainer tr = new IncrementalTrainer(model, spec, cfg)) {
            for (int i = 0; i < steps; i++) {
                tr.step(IncrementalTrainerTest.batch(i % 3));
            }
            assertEquals(restarts, tr.restarts(), "restarts of the run");
            trained = tr.evaluate(PROBE);
            e = TrainerExport.export(tr, base, out);
            if (restarts > 0) {
                assertThrows(IllegalStateException.class, () -> TrainerExport.requireNoMerges(tr));
            }
        }
        assertEquals(restarts > 0, e.model().isPresent(), "a merged model is exported exactly when there were merges");
        Path modelDir = e.model().orElse(base);
        if (restarts > 0) {
            assertTrue(Files.isRegularFile(modelDir.resolve("config.json")) && Files.isRegularFile(modelDir.resolve("generation_config.json")));
        }
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(modelDir, root);
                AdapterSet set = AdapterFiles.load(e.adapter(), model);
                IncrementalTrainer probe = new IncrementalTrainer(model, spec, TrainerConfig.constant(1e-3))) {
            probe.replaceAdapters(set);
            return new double[] {trained, probe.evaluate(PROBE)};
        }
    }

    @Test
    void aRemoraRunWithTwoRestartsExportsTheMergedModelAndTheCurrentAdapter(@TempDir Path tmp) throws Exception {
        double[] l = trainAndReload(tmp, AdapterSpec.mora(4, MoraVariant.SHARING), IncrementalTrainerTest.cfg().withRemora(4, 1), 20, 2);
        assertEquals(l[0], l[1], 1e-5, "loss of the exported model + adapter vs the trainer's own");
    }

    @Test
    void aReloraRunWithTwoRestartsExportsTheMergedModelAndTheCurrentAdapter(@TempDir Path tmp) throws Exception {
        double[] l = trainAndReload(tmp, AdapterSpec.lora(4, 8), IncrementalTrainerTest.cfg().withRemora(4, 1), 20, 2);
        assertEquals(l[0], l[1], 1e-5, "loss of the exported model + adapter vs the trainer's own");
    }

    @Test
    void aRunWithoutRestartsExportsAPlainAdapter(@TempDir Path tmp) throws Exception {
        double[] l = trainAndReload(tmp, AdapterSpec.mora(4, MoraVariant.ROTATION), IncrementalTrainerTest.cfg(), 12, 0);
        assertEquals(l[0], l[1], 1e-6);
        assertFalse(Files.exists(tmp.resolve("out").resolve("model")));
    }
}
