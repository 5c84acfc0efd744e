/**
 * mlhub in JupyterLab: the "Publish model" command (a notebook toolbar button, the command
 * palette, the File menu) and the "Models" side panel. Built once with @jupyterlab/builder
 * (scripts/build-labextension) and shipped prebuilt in the Python package, so installing
 * mlhub needs no Node.js.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { CommandToolbarButton, ICommandPalette } from '@jupyterlab/apputils';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { ModelsPanel } from './models';
import { publishFrom } from './publish';

namespace CommandIDs {
  export const publish = 'mlhub:publish';
  export const models = 'mlhub:show-models';
}

/** An arrow leaving a tray: a model going out as a service. */
const publishIcon = new LabIcon({
  name: 'mlhub:publish',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M11 16V7.83l-3.59 3.58L6 10l6-6 6 6-1.41 ' +
    '1.41L13 7.83V16h-2zm-7 2h16v2H4v-2z"/></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@mlhub/jupyterlab:plugin',
  description: 'Publish a model from a notebook, and see your published models',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, IMainMenu, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    mainMenu: IMainMenu | null,
    labShell: ILabShell | null
  ) => {
    const panel = new ModelsPanel();
    panel.title.icon = publishIcon;

    app.commands.addCommand(CommandIDs.publish, {
      label: 'Publish Model…',
      caption: 'Publish a model from this notebook as an authenticated REST endpoint',
      icon: publishIcon,
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const current: NotebookPanel | null = tracker.currentWidget;
        if (current) {
          await current.sessionContext.ready;
          await publishFrom(current);
        }
      }
    });
    app.commands.addCommand(CommandIDs.models, {
      label: 'Show Published Models',
      caption: 'Your published models, with links to the Models page',
      execute: () => {
        if (labShell) {
          labShell.activateById(panel.id);
        }
        return panel.refresh();
      }
    });

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (notebook: NotebookPanel) => {
        const button = new CommandToolbarButton({
          commands: app.commands,
          id: CommandIDs.publish,
          label: 'Publish model'
        });
        button.addClass('mlhub-publish-toolbar-button');
        // after the notebook's own buttons (the index is clamped to the toolbar's length)
        notebook.toolbar.insertItem(10, 'mlhub-publish', button);
        return button;
      }
    });
    tracker.currentChanged.connect(() => app.commands.notifyCommandChanged(CommandIDs.publish));

    if (palette) {
      palette.addItem({ command: CommandIDs.publish, category: 'mlhub' });
      palette.addItem({ command: CommandIDs.models, category: 'mlhub' });
    }
    if (mainMenu) {
      mainMenu.fileMenu.addGroup([{ command: CommandIDs.publish }], 40);
    }
    app.shell.add(panel, 'left', { rank: 600 });
  }
};

export default plugin;
