package dev.morastream.ops.cli;

import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.llama.LlamaModel;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The optional {@code --adapter} of commands that run a model. */
final class AdapterOption {
    @Option(names = "--adapter", paramLabel = "DIR", description = "Adapter directory (PEFT layout: MoRA, LoRA or full) applied on the model.")
    Path adapter;

    /** Attaches the adapter when one was given, else returns {@code null}. */
    AdapterSet attach(LlamaModel model) {
        return adapter == null ? null : AdapterFiles.load(adapter, model);
    }
}
