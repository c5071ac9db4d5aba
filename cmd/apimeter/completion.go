package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"
)

// helpCmd is `apimeter help [command...]`: the same help as the command's
// --help, for those who type help first.
type helpCmd struct {
	Command []string `arg:"" optional:"" help:"The command (and subcommand) to describe, e.g. serve or keys create."`
}

func (h *helpCmd) Run(kctx *kong.Context) error {
	// --help prints the help of what precedes it and exits 0; a command
	// that does not exist comes back as the parser's error.
	_, err := kctx.Kong.Parse(append(h.Command, "--help"))
	return err
}

// completionCmd prints a shell's completion set-up. The shell then runs
// apimeter itself with COMP_LINE set to ask what may follow the words
// typed so far (main hands that to kongplete, which answers from the same
// command and flag definitions the parser uses), so completion never falls
// behind the commands.
type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish. Load it with: source <(apimeter completion bash) (bash, zsh), or apimeter completion fish | source."`
}

func (c *completionCmd) Run(kctx *kong.Context) error {
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return fmt.Errorf("completion: find this program's path: %w", err)
	}
	_, err = fmt.Fprint(kctx.Stdout, completionScript(c.Shell, kctx.Model.Name, bin))
	return err
}

// completionScript is the set-up of shell for the command name, answered
// by the program at bin.
func completionScript(shell, name, bin string) string {
	q := shellQuote(bin)
	switch shell {
	case "zsh":
		// zsh reads bash's complete -C through its bashcompinit layer.
		return fmt.Sprintf("autoload -U +X bashcompinit && bashcompinit\ncomplete -o default -C %s %s\n", q, name)
	case "fish":
		// fish passes no COMP_LINE: build it from the command line up to
		// the cursor, with the space that starts an empty next word.
		fn := "__" + name + "_complete"
		return fmt.Sprintf(`function %[1]s
    set -lx COMP_LINE (commandline -cp)
    if test -z (commandline -ct)
        set COMP_LINE "$COMP_LINE "
    end
    %[2]s
end
complete -c %[3]s -f -a '(%[1]s)'
`, fn, q, name)
	}
	// bash: -o default falls back to file names where apimeter offers
	// nothing (the value of --data, --config, ...).
	return fmt.Sprintf("complete -o default -C %s %s\n", q, name)
}

// shellQuote quotes s for bash, zsh and fish alike.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
