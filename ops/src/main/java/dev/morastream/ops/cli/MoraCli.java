package dev.morastream.ops.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code mora} command line. */
@Command(
        name = "mora",
        mixinStandardHelpOptions = true,
        versionProvider = MoraCli.Version.class,
        description = "morastream: keep a language model learning MoRA adapters from a live stream.",
        subcommands = {
            RunCommand.class,
            GenerateCommand.class,
            EvalCommand.class,
            PretrainCommand.class,
            TrainCommand.class,
            FeedCommand.class,
            DeadLettersCommand.class,
            AdaptersCommand.class,
            BenchCommand.class,
            ServeCommand.class,
            BrokerCommand.class,
            CommandLine.HelpCommand.class
        })
public final class MoraCli implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.err);
    }

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** The configured command line (tests call it without exiting the JVM). */
    /**
     * A file-system exception's message is only the path ({@code NoSuchFileException: /x/y}): say
     * what happened to it.
     */
    static String describe(Throwable ex) {
        if (ex instanceof java.nio.file.NoSuchFileException f) {
            return "no such file: " + f.getFile();
        }
        if (ex instanceof java.nio.file.AccessDeniedException f) {
            return "permission denied: " + f.getFile();
        }
        if (ex instanceof java.nio.file.FileSystemException f && f.getReason() == null) {
            return ex.getClass().getSimpleName() + ": " + f.getFile();
        }
        return ex.getMessage();
    }

    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new MoraCli());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println("error: " + describe(ex));
            if (Boolean.getBoolean("mora.debug")) {
                ex.printStackTrace(cmd.getErr());
            }
            return 1;
        });
        return cl;
    }

    /** The project version, from the build-filtered {@code version.properties} (else the jar manifest). */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"morastream " + version()};
        }
    }

    /** The project version this program was built as. */
    public static String version() {
        try (java.io.InputStream in = MoraCli.class.getResourceAsStream("/dev/morastream/ops/version.properties")) {
            if (in != null) {
                java.util.Properties p = new java.util.Properties();
                p.load(in);
                String v = p.getProperty("version", "");
                if (!v.isBlank() && !v.contains("${")) {
                    return v;
                }
            }
        } catch (java.io.IOException e) {
            // fall through to the manifest
        }
        String v = MoraCli.class.getPackage().getImplementationVersion();
        if (v == null) {
            throw new IllegalStateException("no version: version.properties is missing from the build and the jar manifest has none");
        }
        return v;
    }
}
