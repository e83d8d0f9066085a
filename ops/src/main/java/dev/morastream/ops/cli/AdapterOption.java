package dev.morastream.ops.cli;

import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The optional {@code --adapter} of commands that run a model. */
final class AdapterOption {
    @Option(names = "--adapter", paramLabel = "DIR", description = "Adapter directory (PEFT layout: MoRA, LoRA or full) applied on the model.")
    Path adapter;

    /** Loads the adapter when one was given (the command owns its model), else returns {@code null}. */
    AdapterSet attach(LlamaModel model) {
        return adapter == null ? null : AdapterFiles.load(adapter, model);
    }

    /** How forwards apply {@code set}: its op, or the base model's for {@code null}. */
    static LinearOp op(AdapterSet set) {
        return set == null ? LinearOp.PLAIN : set.op();
    }
}
