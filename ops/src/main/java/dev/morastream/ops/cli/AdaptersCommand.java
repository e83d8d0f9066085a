package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.llama.LlamaModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Adapter files. */
@Command(name = "adapters", mixinStandardHelpOptions = true, description = "Work with adapter directories (PEFT layout).",
        subcommands = {AdaptersCommand.Merge.class})
public final class AdaptersCommand implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.err);
    }

    /** Writes base + adapter as one HF checkpoint. */
    @Command(name = "merge", mixinStandardHelpOptions = true,
            description = "Merge an adapter (MoRA, LoRA or full) into its base model and write a HuggingFace-layout checkpoint.")
    public static final class Merge implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

        @Option(names = "--adapter", required = true, paramLabel = "DIR", description = "Adapter directory.")
        Path adapter;

        @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output model directory.")
        Path out;

        @Option(names = "--dtype", defaultValue = "F32", description = "Stored dtype (default ${DEFAULT-VALUE}).")
        DType dtype;

        @Override
        public Integer call() throws Exception {
            Path base = modelOptions.dir();
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(base, root);
                    AdapterSet set = AdapterFiles.load(adapter, model)) {
                set.merge();
                model.save(out, dtype, 2L << 30, Map.of("written_by", "morastream adapters merge",
                        "adapter", adapter.toAbsolutePath().toString()));
                for (String f : new String[] {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
                    if (Files.isRegularFile(base.resolve(f))) {
                        Files.copy(base.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
                    }
                }
                System.err.println("wrote merged model " + out + " (" + set.spec().label() + " on " + base + ")");
            }
            return 0;
        }
    }
}
