package dev.morastream.ops.run;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The frozen base model, one copy per device, and its tokenizer: serving and the evaluator use the
 * first copy; trainer {@code i} trains on GPU {@code i mod n} (one trainer per GPU when there are as
 * many), or all on the CPU. Copies are loaded on first use; nobody changes them.
 */
final class ModelSide implements AutoCloseable {
    private final Path dir;
    private final int gpus;
    private final Map<Device, NDManager> managers = new LinkedHashMap<>();
    private final Map<Device, LlamaModel> models = new LinkedHashMap<>();
    private final LlamaModel first;
    private final TextTokenizer tokenizer;

    private ModelSide(Path dir, Consumer<String> say) {
        this.dir = dir;
        this.gpus = Engine.getInstance().getGpuCount();
        this.first = on(gpus > 0 ? Device.gpu(0) : Device.cpu());
        this.tokenizer = TextTokenizer.forModel(dir, first.config());
        say.accept(String.format(Locale.ROOT, "base model %s: %,d parameters on %s (%d GPU%s)", dir, first.parameterCount(),
                first.device(), gpus, gpus == 1 ? "" : "s"));
    }

    static ModelSide load(Path dir, Consumer<String> say) {
        return new ModelSide(dir, say);
    }

    /** The copy serving and the evaluator use. */
    LlamaModel model() {
        return first;
    }

    TextTokenizer tokenizer() {
        return tokenizer;
    }

    /** The device of the {@code i}-th trainer. */
    Device trainerDevice(int i) {
        return gpus > 0 ? Device.gpu(i % gpus) : Device.cpu();
    }

    /** The copy on the {@code i}-th trainer's device. */
    synchronized LlamaModel forTrainer(int i) {
        return on(trainerDevice(i));
    }

    private synchronized LlamaModel on(Device device) {
        return models.computeIfAbsent(device, d -> {
            NDManager m = NDManager.newBaseManager(d);
            managers.put(d, m);
            return LlamaModel.load(dir, m);
        });
    }

    @Override
    public synchronized void close() {
        MoraJob.quietly(tokenizer);
        models.values().forEach(MoraJob::quietly);
        managers.values().forEach(MoraJob::quietly);
    }
}
